"""Clipped n-gram matches for a whole batch of (hypothesis, reference) pairs at once, in numpy.

For each pair ``j`` and order ``n`` this computes ``sum over n-grams g of min(count in hyp j,
count in ref j)`` - the "matches" of chrF and BLEU - exactly, with integer arithmetic only:

* every unit (a character, or a word) is a positive integer id ``< B``; the n-gram starting at
  ``i`` gets the key ``key[n-1][i] * B + id[i + n - 1]``, which identifies it exactly while the
  keys stay below 2**62 (when they would not, the keys of the order below are first replaced by
  their dense rank, which keeps them exact and small);
* ``pair * bound + key`` sorted (numpy's SIMD sort) gives each distinct (pair, n-gram) and its
  count as runs; hypothesis runs are looked up among the reference runs with ``searchsorted``,
  and the ``min`` of the two counts is summed per pair with ``bincount``.

Creating one Python string per n-gram is what makes sacreBLEU's chrF slow and cannot be avoided
one segment at a time; here the cost per n-gram is a few machine operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_LIMIT = 2 ** 62


def char_ids(hyps: Sequence[str], refs: Sequence[str]) -> tuple[Any, Any]:
    """Dense positive ids (one numbering for both sides) of the characters of the joined texts."""
    a = np.frombuffer("".join(hyps).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    b = np.frombuffer("".join(refs).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    if not a.size or not b.size:
        return a.astype(np.int64), b.astype(np.int64)
    table = np.cumsum(np.bincount(np.concatenate((a, b))) > 0)  # code point -> 1..V
    return table[a].astype(np.int64), table[b].astype(np.int64)


def _layout(lengths: Sequence[int]) -> tuple[Any, Any]:
    """Per position: its pair's index, and how many units follow it within its text."""
    lens = np.fromiter(lengths, dtype=np.int64, count=len(lengths))
    pair = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
    ends = np.cumsum(lens)
    after = ends[pair] - np.arange(pair.size, dtype=np.int64) - 1
    return pair, after


def _runs(z: Any) -> tuple[Any, Any]:
    """Distinct values of a sorted array and how often each occurs."""
    if not z.size:
        return z, z
    first = np.empty(z.size, dtype=bool)
    first[0] = True
    np.not_equal(z[1:], z[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return z[starts], np.diff(np.append(starts, z.size))


def _dense(a: Any, b: Any) -> tuple[Any, Any, int]:
    """Replace the keys of both sides by their rank among all distinct keys (same n-gram, same rank)."""
    uniq, inv = np.unique(np.concatenate((a, b)), return_inverse=True)
    return inv[:a.size].astype(np.int64), inv[a.size:].astype(np.int64), int(uniq.size)


def clipped_matches(hyp_ids: Any, hyp_lens: Sequence[int], ref_ids: Any, ref_lens: Sequence[int],
                    orders: int) -> list[list[int]]:
    """``out[n][j]``: clipped matches of order ``n + 1`` between hypothesis ``j`` and reference
    ``j``. ``hyp_ids`` holds the units of all hypotheses back to back (``hyp_lens`` says where
    each ends), all ids ``>= 1``; likewise the references."""
    pairs = len(hyp_lens)
    out = np.zeros((orders, pairs), dtype=np.int64)
    if not hyp_ids.size or not ref_ids.size:
        return out.tolist()
    base = int(max(int(hyp_ids.max()), int(ref_ids.max()))) + 1
    hpair, hafter = _layout(hyp_lens)
    rpair, rafter = _layout(ref_lens)
    kh, kr, bound = hyp_ids, ref_ids, base
    for n in range(orders):
        if n:
            if kh.size <= 1 or kr.size <= 1:
                break
            if bound * base >= _LIMIT:
                kh, kr, bound = _dense(kh, kr)
            kh = kh[:-1] * base + hyp_ids[n:]
            kr = kr[:-1] * base + ref_ids[n:]
            bound *= base
        # n-grams that start and end inside one text
        vh = hafter[:kh.size] >= n
        vr = rafter[:kr.size] >= n
        gh, gr = kh[vh], kr[vr]
        if not gh.size or not gr.size:
            break  # no text is this long on one side: nothing of this order or above
        ph, pr = hpair[:kh.size][vh], rpair[:kr.size][vr]
        span = bound
        if pairs * span >= _LIMIT:
            gh, gr, span = _dense(gh, gr)
        zh = ph * span + gh
        zr = pr * span + gr
        zh.sort()
        zr.sort()
        uh, ch = _runs(zh)
        ur, cr = _runs(zr)
        at = np.minimum(np.searchsorted(ur, uh), ur.size - 1)
        hit = ur[at] == uh
        if not hit.any():
            break  # no match of this order anywhere: none of a higher one either
        both = np.minimum(ch[hit], cr[at[hit]])
        # weights are counts < 2**53: float64 sums of them are exact
        out[n] = np.bincount(uh[hit] // span, weights=both, minlength=pairs).astype(np.int64)
    return out.tolist()

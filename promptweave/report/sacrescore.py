"""sacreBLEU's corpus score of many rows of summed statistics at once: the bootstrap's resamples.

A paired bootstrap scores each of its 1000 resamples from the resample's summed statistics, with
the metric's own ``_compute_score_from_stats`` in sacrebleu (scalar numpy arithmetic, ~25-50 µs a
resample). :class:`SacreScore` does the arithmetic of BLEU and chrF on all resamples together,
to the bit what sacrebleu's code gives:

- sacrebleu (as its ``significance`` module) sums float32 statistics, so its arithmetic runs on
  numpy float32 scalars. Under numpy 1 a Python number promotes such a scalar to float64; under
  numpy 2 (NEP 50) it stays float32. The arrays here take the same types, step by step, in the
  same order of operations; logarithms and exponentials are Python's ``math`` (libm), per row.
- Only the rows on sacrebleu's main path are done so: every n-gram order has hypothesis and
  reference counts and matches (and, for BLEU, no add-k smoothing, which changes the counts).
  Any other row, and TER, is sacrebleu's own function, row by row.
- A guard: the first rows of each call are also scored by sacrebleu itself; any difference (a
  later sacrebleu that changes its formula) and every row is sacrebleu's, and it says so once.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

#: numpy < 2: a Python number with a float32 scalar gives float64 (value-based casting)
_WIDE = type(np.float32(1) * 2) is np.float64
_CHECKED_ROWS = 8

log = logging.getLogger("promptweave.report")


class SacreScore:
    """``metric``'s score from summed statistics: ``self(row)`` as sacrebleu computes it
    (a float), :meth:`many` the same for every row of a 2-D float32 array."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._rows = _kind(metric)

    def __call__(self, summed: np.ndarray) -> float:
        return float(self.metric._compute_score_from_stats(summed).score)

    def many(self, sums: np.ndarray) -> np.ndarray:
        """Every row's score (float64), equal to ``[self(row) for row in sums]``."""
        fast = self._rows(self.metric, sums) if self._rows is not None and sums.dtype == np.float32 \
            and sums.ndim == 2 else None
        if fast is None:
            return np.array([self(row) for row in sums], dtype=float)
        out, ok = fast
        for i in np.flatnonzero(~ok):
            out[i] = self(sums[i])
        for i in np.flatnonzero(ok)[:_CHECKED_ROWS]:
            want = self(sums[i])
            if not (out[i] == want or (math.isnan(want) and math.isnan(out[i]))):
                log.warning("%s: the bootstrap's vectorised score differs from sacrebleu's (%r, %r); "
                            "scoring with sacrebleu's own function", type(self.metric).__name__, out[i], want)
                self._rows = None
                return np.array([self(row) for row in sums], dtype=float)
        return out


def _kind(metric: Any) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    if isinstance(metric, BLEU) and metric.smooth_method != "add-k":
        return _bleu_rows
    if isinstance(metric, CHRF):
        return _chrf_rows
    return None


def _chrf_rows(metric: Any, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """sacrebleu's ``CHRF._compute_f_score`` on every row where each order has hypothesis,
    reference and matching n-grams (then no ``eps`` enters, and the effective order is the order)."""
    order = int(metric.order)
    if sums.shape[1] < 3 * order or order <= 0:
        return None
    wide = np.float64 if _WIDE else np.float32
    hyp, ref, match = sums[:, 0:3 * order:3], sums[:, 1:3 * order:3], sums[:, 2:3 * order:3]
    ok = (hyp > 0).all(1) & (ref > 0).all(1) & (match > 0).all(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = (match / hyp).astype(wide)  # float32 / float32 is float32 under both numpys
        rec = (match / ref).astype(wide)
        factor = metric.beta ** 2
        score: Any = 0.0
        avg_prec: Any = 0.0
        avg_rec: Any = 0.0
        for i in range(order):
            p, r = prec[:, i], rec[:, i]
            denom = factor * p + r
            score = score + (1 + factor) * p * r / denom
            avg_prec = avg_prec + p
            avg_rec = avg_rec + r
        if metric.eps_smoothing:
            out = 100 * score / order
        else:
            avg_prec = avg_prec / order
            avg_rec = avg_rec / order
            f = (1 + factor) * avg_prec * avg_rec
            f = f / ((factor * avg_prec) + avg_rec)
            out = 100 * f
    return np.asarray(out, dtype=np.float64).copy(), ok


def _bleu_rows(metric: Any, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """sacrebleu's ``BLEU.compute_bleu`` on every row where each order has n-grams and matches
    (then no smoothing applies): the precisions as arrays, the logarithms, their sum (Python's
    ``sum``, as sacrebleu) and the brevity penalty per row."""
    k = int(metric.max_ngram_order)
    if sums.shape[1] != 2 + 2 * k or k <= 0:
        return None
    wide = np.float64 if _WIDE else np.float32
    correct, total = sums[:, 2:2 + k], sums[:, 2 + k:2 + 2 * k]
    ok = (correct > 0).all(1) & (total > 0).all(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if _WIDE:
            prec = 100. * correct.astype(wide) / total.astype(wide)
        else:
            prec = 100. * correct / total
    out = np.zeros(len(sums), dtype=np.float64)
    exp, log_ = math.exp, math.log
    lens = sums[:, :2].tolist()
    for i, row in zip(np.flatnonzero(ok).tolist(), prec[ok].tolist()):
        sys_len, ref_len = int(lens[i][0]), int(lens[i][1])
        bp = 1.0
        if sys_len < ref_len:
            bp = exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
        out[i] = bp * exp(sum([log_(p) for p in row]) / k)
    return out, ok

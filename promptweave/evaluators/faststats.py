"""Fast, exact per-segment sufficient statistics for sacreBLEU's BLEU and chrF/chrF++.

sacreBLEU counts n-grams with a Python loop per n-gram and tokenizes with four regular expressions
per line; at a million segments that is most of a run's finish. This module computes the *same*
statistics (same list layout, same ``int`` values) and the same sentence-level scores (the same
float operations in the same order) with C-level work instead:

* a chunk of single-reference segments has its n-gram matches counted all at once in numpy, with
  exact integer keys (:mod:`.ngramcount`); hypothesis and reference n-gram totals follow from
  the lengths;
* otherwise (several references, small chunks) each order's n-grams are built from the order below
  with one ``map``, and matched through set intersections (``Counter``-style counting only where
  both sides repeat an n-gram), so no Python loop runs per n-gram;
* the ``13a`` and ``zh`` tokenizers are re-implemented (:mod:`.fasttok`); every other tokenizer is
  sacreBLEU's own object, called.

:func:`fast_stats_for` returns ``None`` for anything not covered (TER, a subclassed metric, a
sacreBLEU version these rules were not checked against), and callers then use sacreBLEU itself.
Equality with sacreBLEU is asserted by ``tests/evaluators/test_faststats.py`` on real WMT22 data
and on generated text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from itertools import chain, count
from operator import add
from typing import Any

from .fasttok import tokens_13a, tokens_zh

try:  # the C counting loop behind Counter(), without Counter's per-call Python overhead
    from _collections import _count_elements
except ImportError:  # pragma: no cover - other interpreters
    def _count_elements(mapping: dict[Any, int], iterable: Any) -> None:
        get = mapping.get
        for elem in iterable:
            mapping[elem] = get(elem, 0) + 1

sacrelogger = logging.getLogger("sacrebleu")

#: sacreBLEU versions whose BLEU/chrF/tokenizer sources these rules reproduce (read and tested);
#: any other version is scored by sacreBLEU itself until the tests pass against it and it is added
CHECKED_VERSIONS = frozenset({"2.6.0"})

#: chunks of at least this many single-reference segments have their n-grams matched all at
#: once in numpy (:mod:`.ngramcount`), whose fixed cost per call is then shared (measured: from
#: 8 rows on, batches beat row-by-row strings; at 32 rows per call they cost about half)
BATCH_MIN = 8
#: ... and at most this many: the arrays of a few hundred rows stay in the CPU caches (measured:
#: per row, 256-row batches cost about two thirds of 5,000-row ones)
BATCH_MAX = 256

def warn_tokenized() -> None:
    """The warnings of sacreBLEU's ``_extract_corpus_statistics`` for 100+ hypotheses that end
    in a tokenized period (BLEU without ``force``)."""
    sacrelogger.warning("That's 100 lines that end in a tokenized period ('.')")
    sacrelogger.warning("It looks like you forgot to detokenize your test data, which may hurt your score.")
    sacrelogger.warning("If you insist your data is detokenized, or don't care, you can suppress this "
                        "message with the `force` parameter.")


def _word_grams(words: Sequence[str], n: int) -> Sequence[Any]:
    """Word n-grams of order ``n + 1`` as tuples (sacreBLEU's BLEU keys; for chrF++ its
    ``' '.join`` keys are equal exactly when the tuples are, as tokens hold no whitespace)."""
    return words if n == 0 else list(zip(*[words[k:] for k in range(n + 1)]))


def _clipped(hyp: Sequence[Any], ref: Sequence[Any], dups_likely: bool) -> int:
    """``sum(min(hyp.count(g), ref.count(g)))`` over the n-grams ``g`` both sequences have.

    Sets first where repeats are rare (orders >= 3): when either side repeats nothing, each
    shared n-gram adds ``min(count, 1) = 1``; only when both repeat something are they counted
    (into plain dicts: ``Counter()`` itself costs a microsecond of Python per call)."""
    hc: dict[Any, int] = {}
    rc: dict[Any, int] = {}
    if dups_likely:
        _count_elements(hc, hyp)
        _count_elements(rc, ref)
        shared = hc.keys() & rc.keys()
    else:
        hs = set(hyp)
        shared = hs.intersection(ref)  # probes the reference's n-grams without storing them
        if not shared or len(hs) == len(hyp) or len(set(ref)) == len(ref):
            return len(shared)
        # both sides repeat something: count just the shared n-grams (hashes are cached by now)
        _count_elements(hc, filter(shared.__contains__, hyp))
        _count_elements(rc, filter(shared.__contains__, ref))
    return sum(map(min, map(hc.__getitem__, shared), map(rc.__getitem__, shared))) if shared else 0


def _char_stats(h: str, r: str, orders: int, st: list[int]) -> None:
    """Append chrF's ``[hyp count, ref count, matches]`` for char n-gram orders ``1..orders``.

    Order ``n`` n-grams are built from order ``n - 1`` with one C-level ``map``
    (``s[i:i+n] == s[i:i+n-1] + s[i+n-1]``); the counts follow from the lengths (sacreBLEU counts
    no hypothesis n-grams of an order for which the reference has none); and no match at order
    ``n`` means none at any higher order (each contains one), so those are not built at all."""
    lh, lr = len(h), len(r)
    hg: Any = h
    rg: Any = r
    matching = True
    for n in range(orders):
        rn = lr - n if lr > n else 0
        hn = lh - n if lh > n and rn else 0
        m = 0
        if hn and matching:
            if n:
                hg = list(map(add, hg, h[n:]))
                rg = list(map(add, rg, r[n:]))
            m = _clipped(hg, rg, n < 2)
            matching = m > 0
        st += (hn, rn, m)


def _word_stats(h: list[str], r: list[str], orders: int, st: list[int]) -> None:
    """:func:`_char_stats` for chrF++'s word n-grams."""
    lh, lr = len(h), len(r)
    matching = True
    for n in range(orders):
        rn = lr - n if lr > n else 0
        hn = lh - n if lh > n and rn else 0
        m = 0
        if hn and matching:
            m = _clipped(_word_grams(h, n), _word_grams(r, n), n == 0)
            matching = m > 0
        st += (hn, rn, m)


def _max_counts(refs: list[Sequence[Any]]) -> dict[Any, int]:
    """N-gram counts over several references, each n-gram at its largest count (sacreBLEU's merge)."""
    merged: dict[Any, int] = {}
    for grams in refs:
        c: dict[Any, int] = {}
        _count_elements(c, grams)
        for g, k in c.items():
            if k > merged.get(g, 0):
                merged[g] = k
    return merged


def _tokenizer(tok: Any) -> Callable[[str], list[str]]:
    """Our exact re-implementation for 13a and zh; any other tokenizer is sacreBLEU's object."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    if type(tok) is Tokenizer13a:
        return tokens_13a
    if type(tok) is TokenizerZh:
        return tokens_zh
    return lambda line: tok(line).split()


def _ref_rows(hyps: Sequence[str], streams: Sequence[Sequence[str | None]]) -> Any:
    """``(hyp, [refs without None])`` pairs; ``zip`` truncates as sacreBLEU's own zips do."""
    for hyp, *refs in zip(hyps, *streams):
        yield hyp, [r for r in refs if r is not None]


class FastBLEU:
    """sacreBLEU BLEU statistics ``[hyp_len, ref_len, correct_1..N, total_1..N]`` and sentence
    BLEU (the sentence metric's smoothing and effective order) computed from them."""

    def __init__(self, corpus_m: Any, sentence_m: Any) -> None:
        self.order: int = corpus_m.max_ngram_order
        self.lowercase: bool = corpus_m.lowercase
        self.force: bool = corpus_m._force
        self.tokens = _tokenizer(corpus_m.tokenizer)
        self.smooth_method: str = sentence_m.smooth_method
        value = sentence_m.smooth_value
        self.smooth_value = type(sentence_m).SMOOTH_DEFAULTS[self.smooth_method] if value is None else value
        self.effective_order: bool = sentence_m.effective_order

    def _prep(self, sent: str) -> list[str]:
        # BLEU._preprocess_segment: lowercase, then tokenize the right-stripped line
        if self.lowercase:
            sent = sent.lower()
        return self.tokens(sent.rstrip())

    def stats(self, hyps: Sequence[str], streams: Sequence[Sequence[str | None]],
              warn: bool = True) -> list[list[int]]:
        """Each row's statistics; ``warn=False`` leaves sacreBLEU's tokenized-period warning to a
        caller that sees the whole corpus (chunks would warn per chunk, not per corpus)."""
        order, prep, tok_count = self.order, self._prep, 0
        rows = list(_ref_rows(hyps, streams))
        if not self.force and warn:
            tok_count = sum(1 for hyp, _ in rows if hyp.endswith(" ."))
        if len(rows) >= BATCH_MIN and all(len(refs) == 1 for _, refs in rows):
            out = []
            for i in range(0, len(rows), BATCH_MAX):
                part = rows[i:i + BATCH_MAX]
                out += self._batch([prep(h) for h, _ in part], [prep(refs[0]) for _, refs in part])
        else:
            out = [self._segment(prep(hyp), [prep(r) for r in refs], order) for hyp, refs in rows]
        if tok_count >= 100:
            warn_tokenized()
        return out

    def _batch(self, hyps: list[list[str]], refs: list[list[str]]) -> list[list[int]]:
        """Single-reference rows: the word n-gram matches of all rows at once (:mod:`.ngramcount`),
        each distinct token numbered through one dict."""
        from .ngramcount import clipped_matches, np

        vocab: dict[str, int] = {}
        ids = count(1)  # a new token takes the next number, a known one keeps its own
        hid = np.fromiter(map(vocab.setdefault, chain.from_iterable(hyps), ids), dtype=np.int64)
        rid = np.fromiter(map(vocab.setdefault, chain.from_iterable(refs), ids), dtype=np.int64)
        hl, rl = list(map(len, hyps)), list(map(len, refs))
        matches = clipped_matches(hid, hl, rid, rl, self.order)
        rng = range(self.order)
        return [[lh, lr, *(m[j] for m in matches), *(lh - n if lh > n else 0 for n in rng)]
                for j, (lh, lr) in enumerate(zip(hl, rl))]

    @staticmethod
    def _segment(hyp: list[str], refs: list[list[str]], order: int) -> list[int]:
        hyp_len = len(hyp)
        # BLEU._get_closest_ref_len: the nearest length, the shorter one on a tie
        ref_len = min((abs(hyp_len - len(r)), len(r)) for r in refs)[1]
        total = [hyp_len - n if hyp_len > n else 0 for n in range(order)]
        correct = [0] * order
        for n in range(min(hyp_len, order)):
            rg = [_word_grams(r, n) for r in refs if len(r) > n]
            if not rg:
                break
            hg = _word_grams(hyp, n)
            if len(rg) == 1:
                m = _clipped(hg, rg[0], n == 0)
            else:  # clipped by the largest count over the references
                hc: dict[Any, int] = {}
                _count_elements(hc, hg)
                rc = _max_counts(rg)
                shared = hc.keys() & rc.keys()
                m = sum(map(min, map(hc.__getitem__, shared), map(rc.__getitem__, shared))) if shared else 0
            correct[n] = m
            if not m:  # no n-gram of this order matched: no longer one can (it contains one)
                break
        return [hyp_len, ref_len, *correct, *total]

    def segment_score(self, st: Sequence[int]) -> float:
        """``BLEU.compute_bleu`` for one segment's statistics, the same float operations in order."""
        mo = self.order
        correct, total = list(st[2:2 + mo]), list(st[2 + mo:])
        sys_len, ref_len = int(st[0]), int(st[1])
        bp = 1.0
        if sys_len < ref_len:
            bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
        if not any(correct):
            return 0.0
        method, value = self.smooth_method, self.smooth_value
        precisions = [0.0] * mo
        smooth_mteval = 1.0
        eff_order = mo
        for n in range(1, mo + 1):
            if method == "add-k" and n > 1:
                correct[n - 1] += value
                total[n - 1] += value
            if total[n - 1] == 0:
                break
            if self.effective_order:
                eff_order = n
            if correct[n - 1] == 0:
                if method == "exp":
                    smooth_mteval *= 2
                    precisions[n - 1] = 100. / (smooth_mteval * total[n - 1])
                elif method == "floor":
                    precisions[n - 1] = 100. * value / total[n - 1]
            else:
                precisions[n - 1] = 100. * correct[n - 1] / total[n - 1]
        # sacrebleu.utils.my_log floors log(0) at -9999999999 (an int, kept as such for sum())
        logs = [math.log(p) if p != 0.0 else -9999999999 for p in precisions[:eff_order]]
        return float(bp * math.exp(sum(logs) / eff_order))


class FastCHRF:
    """sacreBLEU chrF/chrF++ statistics (``[hyp, ref, match]`` per char order, then per word
    order) against the best reference, and the sentence score computed from them."""

    def __init__(self, corpus_m: Any, sentence_m: Any) -> None:
        self.m = corpus_m
        self.char_order: int = corpus_m.char_order
        self.word_order: int = corpus_m.word_order
        self.lowercase: bool = corpus_m.lowercase
        self.whitespace: bool = corpus_m.whitespace
        # sacreBLEU's own f-score: cheap (no object built), and exact by definition
        self.f_select = corpus_m._compute_f_score
        self.f_score = sentence_m._compute_f_score

    def _prep(self, sent: str) -> tuple[str, list[str]]:
        if self.lowercase:
            sent = sent.lower()
        chars = sent if self.whitespace else "".join(sent.split())
        return chars, self.m._remove_punctuation(sent) if self.word_order else []

    def _against(self, h: tuple[str, list[str]], r: tuple[str, list[str]]) -> list[int]:
        st: list[int] = []
        _char_stats(h[0], r[0], self.char_order, st)
        if self.word_order:
            _word_stats(h[1], r[1], self.word_order, st)
        return st

    def stats(self, hyps: Sequence[str], streams: Sequence[Sequence[str | None]],
              warn: bool = True) -> list[list[int]]:
        """Each row's statistics (``warn``: as :meth:`FastBLEU.stats`; chrF never warns)."""
        rows = list(_ref_rows(hyps, streams))
        if len(rows) >= BATCH_MIN and self.char_order and all(len(refs) == 1 for _, refs in rows):
            return [st for i in range(0, len(rows), BATCH_MAX) for st in self._batch(rows[i:i + BATCH_MAX])]
        out = []
        for hyp, refs in rows:
            h = self._prep(hyp)
            if len(refs) == 1:
                out.append(self._against(h, self._prep(refs[0])))
                continue
            best: list[int] = []
            best_f = -1.0
            for ref in refs:  # the first reference with the strictly highest f-score wins
                st = self._against(h, self._prep(ref))
                f = self.f_select(st)
                if f > best_f:
                    best_f, best = f, st
            out.append(best)
        return out

    def _batch(self, rows: list[tuple[str, list[str]]]) -> list[list[int]]:
        """Single-reference rows: the char n-gram matches of all rows at once (:mod:`.ngramcount`);
        the n-gram counts from the lengths; chrF++'s word n-grams row by row."""
        from .ngramcount import char_ids, clipped_matches

        hp = [self._prep(h) for h, _ in rows]
        rp = [self._prep(refs[0]) for _, refs in rows]
        hs, rs = [h[0] for h in hp], [r[0] for r in rp]
        hl, rl = list(map(len, hs)), list(map(len, rs))
        hid, rid = char_ids(hs, rs)
        matches = clipped_matches(hid, hl, rid, rl, self.char_order)
        out = []
        for j, (lh, lr) in enumerate(zip(hl, rl)):
            st: list[int] = []
            for n in range(self.char_order):
                rn = lr - n if lr > n else 0
                st += (lh - n if lh > n and rn else 0, rn, matches[n][j])
            if self.word_order:
                _word_stats(hp[j][1], rp[j][1], self.word_order, st)
            out.append(st)
        return out

    def segment_score(self, st: list[int]) -> float:
        return float(self.f_score(st))


def fast_stats_for(corpus_m: Any, sentence_m: Any) -> FastBLEU | FastCHRF | None:
    """The fast twin of a sacreBLEU metric pair, or ``None`` when its configuration is not one
    this module reproduces exactly (then sacreBLEU computes the statistics itself)."""
    try:
        import sacrebleu
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:  # pragma: no cover - sacrebleu is a dependency of these metrics
        return None
    if sacrebleu.__version__ not in CHECKED_VERSIONS:
        return None
    try:
        if type(corpus_m) is BLEU and type(sentence_m) is BLEU:
            if (sentence_m.max_ngram_order != corpus_m.max_ngram_order
                    or corpus_m.smooth_method not in BLEU.SMOOTH_DEFAULTS
                    or sentence_m.smooth_method not in BLEU.SMOOTH_DEFAULTS
                    or not isinstance(corpus_m.max_ngram_order, int) or corpus_m.max_ngram_order < 1):
                return None
            return FastBLEU(corpus_m, sentence_m)
        if type(corpus_m) is CHRF and type(sentence_m) is CHRF:
            if (not isinstance(corpus_m.char_order, int) or not isinstance(corpus_m.word_order, int)
                    or corpus_m.char_order < 0 or corpus_m.word_order < 0
                    or corpus_m.char_order + corpus_m.word_order < 1):
                return None
            return FastCHRF(corpus_m, sentence_m)
    except AttributeError:  # a sacreBLEU version with other internals: use its own code
        return None
    return None

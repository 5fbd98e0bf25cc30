"""Paired significance tests and confidence intervals, resampled exactly as sacrebleu does.

sacrebleu's ``significance`` module defines the procedure (Koehn 2004 paired bootstrap, Riezler &
Maxwell 2005 approximate randomization): indices from ``numpy.random.default_rng(SACREBLEU_SEED)``
(12345 unless the environment says otherwise), the statistic recomputed from summed per-segment
sufficient statistics, p = (#{resampled >= observed} + 1) / (trials + 1), the 95% interval from the
1/40 quantiles. BLEU/chrF/TER go through ``sacrebleu.significance.PairedTest`` itself
(:func:`sacrebleu_paired`); for scores that are means of segment values (COMET, LLM judges, human
scores) :func:`paired` draws the same indices and treats ``[value, 1]`` as the segment statistics,
so that a mean is "sum / count" exactly as a sacrebleu corpus score is a function of summed stats.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import PromptweaveError
from .sacrescore import SacreScore

TestType = Literal["bs", "ar"]
DEFAULT_SAMPLES = {"bs": 1000, "ar": 10000}
_CHUNK_CELLS = 8_000_000  # resample x segment counts per float32 block (32 MB)
_DRAW_CELLS = 100_000  # indices drawn at once (800 KB of int64)


def seed_from_env() -> int | None:
    """sacrebleu's seed rule: ``SACREBLEU_SEED`` (``none`` = from OS entropy), default 12345."""
    seed = os.environ.get("SACREBLEU_SEED", "12345").strip()
    if seed.lower() == "none":
        return None
    try:
        value = int(seed)
    except ValueError:
        value = -1
    if value < 0:  # numpy's generators take non-negative integers only
        raise PromptweaveError(f"SACREBLEU_SEED={seed!r}: not a seed; set a non-negative integer, "
                               "or 'none' for a random one")
    return value


@dataclass
class TestResult:
    """One system against the baseline: its score, the p-value (None for the baseline) and, for
    the bootstrap, the resampled mean and the half-width of the 95% interval."""

    system: str
    score: float
    p_value: float | None = None
    mean: float | None = None
    ci: float | None = None
    n: int = 0

    def __post_init__(self) -> None:
        # sacrebleu hands back numpy scalars (float32 under numpy 2), which json cannot write
        for name in ("score", "p_value", "mean", "ci"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "score": self.score, "p_value": self.p_value,
                "mean": self.mean, "ci": self.ci, "n": self.n}


def estimate_ci(scores: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% interval (sacrebleu: the n//40-th values from each end)."""
    s = np.sort(scores)
    lo = len(s) // 40
    return float(s.mean()), float(0.5 * (s[len(s) - lo - 1] - s[lo]))


def p_value(samples: np.ndarray, observed: float) -> float:
    """(#{samples > observed} + 1) / (len + 1), as sacrebleu (after multeval)."""
    return (int(np.sum(samples > observed)) + 1) / (len(samples) + 1)


def _draw_counts(rng: np.random.Generator, n: int, size: int) -> list[np.ndarray]:
    """``size`` resamples of ``n`` segments from ``rng``: the same draws as sacrebleu's
    ``rng.choice(n, size=(size, n))``, taken in blocks of rows (the generator's stream does not
    depend on how the rows are split; only a block of indices is ever held), each resample kept
    as how often it drew each segment. float32 blocks of at most ``_CHUNK_CELLS`` cells; float32
    holds the counts exactly (n <= 2**24). One ``bincount`` per resample into the block:
    flattening the indices into one big ``bincount`` was ~8x slower. The indices are drawn a few
    resamples at a time (``_DRAW_CELLS``), so that they stay in the CPU's cache until counted:
    2.5x faster than drawing a whole block's first."""
    per = max(1, _CHUNK_CELLS // max(1, n))
    sub = max(1, _DRAW_CELLS // max(1, n))
    blocks = []
    for start in range(0, size, per):
        block = np.empty((min(per, size - start), n), dtype=np.float32)
        for first in range(0, len(block), sub):
            rows = rng.choice(n, size=(min(sub, len(block) - first), n), replace=True)
            for j, row in enumerate(rows, first):
                block[j] = np.bincount(row, minlength=n)
        blocks.append(block)
    return blocks


def _resampled(stats: np.ndarray, counts: list[np.ndarray], compute: Callable[[np.ndarray], float]) -> np.ndarray:
    """The statistic of every resample: ``compute`` of its summed stats.

    The sums are ``counts @ stats`` (how often each segment was drawn, times its statistics): one
    matrix product instead of gathering a (resamples x segments x k) array. sacrebleu's statistics
    are integer counts, so the sums are exact and equal to sacrebleu's own. A ``compute`` with a
    ``many`` (:class:`~.sacrescore.SacreScore`) scores a block's rows at once."""
    many = getattr(compute, "many", None)
    out: list[float] = []
    for block in counts:
        sums = block.astype(stats.dtype, copy=False) @ stats
        out.extend(many(sums).tolist() if many is not None else (compute(row) for row in sums))
    return np.array(out, dtype=float)


class Draws:
    """The bootstrap's resampling counts, drawn once per (seed, segments, resamples) and shared by
    every system and every column of one report: sacrebleu draws each system's indices from a
    fresh ``default_rng(seed)``, so with a fixed seed they are the same every time. With no seed
    (``SACREBLEU_SEED=none``) every draw is fresh, as in sacrebleu."""

    def __init__(self) -> None:
        self._key: tuple[int, int, int] | None = None
        self._counts: list[np.ndarray] = []

    def get(self, seed: int | None, n: int, size: int) -> list[np.ndarray]:
        if seed is None:
            return _draw_counts(np.random.default_rng(None), n, size)
        if self._key != (seed, n, size):
            self._key, self._counts = None, []  # let the old blocks go before drawing
            self._counts = _draw_counts(np.random.default_rng(seed), n, size)
            self._key = (seed, n, size)
        return self._counts


def _mean_of(summed: np.ndarray) -> float:
    return float(summed[0] / summed[1]) if summed[1] else float("nan")


def mean_stats(values: Sequence[float]) -> np.ndarray:
    """Segment statistics of a mean: one ``[value, 1]`` row per segment (float64)."""
    arr = np.asarray(values, dtype=float)
    return np.stack([arr, np.ones_like(arr)], axis=1)


def paired(baseline: tuple[str, np.ndarray], systems: Sequence[tuple[str, np.ndarray]],
           test: TestType = "bs", n_samples: int = 0, seed: int | None = None,
           compute: Callable[[np.ndarray], float] = _mean_of, draws: Draws | None = None) -> list[TestResult]:
    """Paired test of each system against ``baseline`` over aligned segment statistics.

    ``stats`` arrays are ``(segments, k)``; ``compute`` turns summed stats into a score (default:
    a mean over :func:`mean_stats`). Every system sees the same resampling indices, as in
    sacrebleu, so results do not depend on the order of the systems. ``draws`` shares the
    bootstrap indices with other calls (other columns of one report).
    """
    draws = draws or Draws()
    n_samples = n_samples or DEFAULT_SAMPLES[test]
    bl_name, bl = baseline
    n = bl.shape[0]
    if n == 0:
        raise ValueError("no aligned segments to test")
    bl_score = compute(bl.sum(0))
    bs_idxs = draws.get(seed, n, 1000 if test == "ar" else n_samples)
    bl_scores = _resampled(bl, bs_idxs, compute)
    bl_mean, bl_ci = estimate_ci(bl_scores)
    results = [TestResult(bl_name, bl_score, None, bl_mean, bl_ci, n)]
    for name, st in systems:
        if st.shape[0] != n:
            raise ValueError(f"{name}: {st.shape[0]} segments, baseline {bl_name} has {n}")
        score = compute(st.sum(0))
        diff = abs(bl_score - score)
        if np.array_equal(st, bl):
            # sacrebleu would give the minimum p (1/(n+1)) here: its centred statistic is 0 > 0
            # never; the same scores on every segment are no evidence of a difference
            results.append(TestResult(name, score, 1.0, *estimate_ci(bl_scores), n))
            continue
        if test == "bs":
            idxs = draws.get(seed, n, n_samples)  # sacrebleu: a fresh default_rng(seed) per system
            sys_scores = _resampled(st, idxs, compute)
            sample = np.abs(sys_scores - bl_scores)
            mean, ci = estimate_ci(sys_scores)
            results.append(TestResult(name, score, p_value(sample - sample.mean(), diff), mean, ci, n))
        else:
            rng = np.random.default_rng(seed)
            pos = rng.integers(2, size=(n_samples, n), dtype=bool)
            boot = _draw_counts(rng, n, 1000)  # after ``pos``, as sacrebleu draws them
            a = pos @ bl + (~pos) @ st
            b = (~pos) @ bl + pos @ st
            sa = np.array([compute(x) for x in a])
            sb = np.array([compute(x) for x in b])
            mean, ci = estimate_ci(_resampled(st, boot, compute))
            results.append(TestResult(name, score, p_value(np.abs(sa - sb), diff), mean, ci, n))
    return results


def sacrebleu_paired(metric: Any, named: Sequence[tuple[str, Sequence[str]]],
                     references: Sequence[Sequence[str | None]], test: TestType = "bs",
                     n_samples: int = 0) -> tuple[str, list[TestResult]]:
    """sacrebleu's own ``PairedTest`` for one sacrebleu metric object (BLEU, CHRF, TER);
    ``named[0]`` is the baseline; ``references`` are reference streams. Returns the signature
    (with the seed and sample count, as sacrebleu prints it) and one result per system."""
    from sacrebleu.significance import PairedTest

    refs: Any = references  # sacrebleu skips the None of a missing reference
    ps = PairedTest(list(named), {"m": metric}, references=refs, test_type=test,
                    n_samples=n_samples, n_ar_confidence=0 if test == "ar" else -1)
    sigs, scores = ps()
    (sig,) = sigs.values()
    col: list[Any] = next(v for k, v in scores.items() if k != "System")
    n = len(named[0][1])
    out = [TestResult(str(name), float(r.score), r.p_value, r.mean, r.ci, n)
           for name, r in zip(scores["System"], col)]
    return sig.format(short=False) if hasattr(sig, "format") else str(sig), out


def sacrebleu_stats(metric: Any, hypotheses: Sequence[str],
                    references: Sequence[Sequence[str | None]] | None) -> tuple[np.ndarray, Callable[[np.ndarray], float]]:
    """sacrebleu's per-segment sufficient statistics (float32, as sacrebleu resamples them) and
    the function from summed statistics to the corpus score, for :func:`paired`. ``references``
    None reuses the ones the metric cached on its last call (sacrebleu's own reference cache)."""
    if references is not None:
        metric._check_corpus_score_args(list(hypotheses), [list(r) for r in references])
        metric._ref_cache = metric._cache_references(references)  # as sacrebleu's Metric(references=...)
    stats = np.array(metric._extract_corpus_statistics(list(hypotheses), None), dtype="float32")
    return stats, SacreScore(metric)

"""Meta-evaluation: how well metric scores agree with human (MQM) scores.

Follows google-research/mt-metrics-eval (``stats.py``, ``tau_optimization.py``, ``data.py``):

- :func:`pairwise_accuracy`: system-level pairwise accuracy (Kocmi et al. 2021), pooled over
  language pairs: a pair of systems is correct when ``sign(human diff) == sign(metric diff)``.
- :func:`kendall_tau`: Kendall tau-b (scipy's definition), over the flattened system x item matrix
  (``average_by="none"``) or per item / per system and then averaged (NaN taus dropped).
- :func:`tie_calibrated_accuracy`: ``acc_eq`` with tie calibration (Deutsch et al. 2023): one global
  epsilon, metric differences ``<= epsilon`` count as ties, chosen to maximise the accuracy averaged
  over items; candidates are 0 and every distinct ``|metric diff|`` of a pair, the smallest best
  epsilon wins (``np.nanargmax``), all pairs are used (``sample_rate=1.0`` as in the WMT23 tasks).
- :func:`pearson`: Pearson's r, flattened or averaged (centred two-pass, as numpy/scipy).

- :func:`soft_pairwise_accuracy`: the WMT24 system-level statistic (:mod:`.significance`).

The statistics live in :mod:`.correlation`; this module picks the systems of each statistic,
evaluates one metric with every statistic, and bootstraps items for confidence intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np

from .correlation import (AverageBy, TauB, TieCalibration, TieSweep, _centered, _moments, _nanmean, _pairs,
                          _pearson_from_moments, _pearson_lines, _present, kendall_tau, pairwise_accuracy,
                          pearson, system_means, tau_b_per_item, tau_stats, tie_calibrated_accuracy)
from .mtme import ScoreTable, default_ref_systems, metric_refs
from .significance import soft_pairwise_accuracy


# --------------------------------------------------------------------------- meta_evaluate

RefsPolicy = Literal["wmt", "exclude", "include"]
#: statistic key -> label used in tables
STATISTICS: dict[str, str] = {
    "sys_acc": "sys pairwise acc",
    "sys_pearson": "sys Pearson",
    "sys_soft_acc": "sys soft pairwise acc (SPA, WMT24)",
    "seg_kendall": "seg Kendall tau-b (flat)",
    "seg_kendall_item": "seg Kendall tau-b (by item)",
    "seg_pearson": "seg Pearson (flat)",
    "acc_eq": "seg acc_eq (tie-calibrated, by item)",
}


@dataclass
class MetaEvalResult:
    """Every statistic of one metric, the systems each used, and bootstrap intervals."""

    metric: str
    values: dict[str, float]
    epsilon: float
    systems: dict[str, list[str]]
    sys_pairs: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: int = 0
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, **self.values, "acc_eq_epsilon": self.epsilon,
                               "sys_pairs": self.sys_pairs, "systems": self.systems}
        if self.bootstrap:
            out.update(ci={k: list(v) for k, v in self.ci.items()}, bootstrap=self.bootstrap,
                       confidence=self.confidence)
        return out


def select_systems(table: ScoreTable, metric: str, ref_systems: Iterable[str] | None = None,
                   std_refs: Iterable[str] | None = None) -> tuple[list[int], list[int]]:
    """Row indices of (MT systems, MT systems + human references) that have both scores.

    A system needs at least one human and one metric score. ``std_refs`` (the references the
    metrics were computed with, mt-metrics-eval's ``main_refs``; default: every reference named
    in the table's metric names, e.g. ``refA`` for ``BLEU-refA``) are never systems, not even for
    source-based metrics, so that all metrics of a table are compared on the same systems.
    """
    refs_set = default_ref_systems(table.systems) if ref_systems is None else set(ref_systems)
    std = set().union(*(metric_refs(k, table.systems) for k in table.metrics)) if std_refs is None \
        else set(std_refs)
    m = table.metrics[metric]
    usable = [r for r, s in enumerate(table.systems) if s not in std
              and not np.all(np.isnan(table.human[r])) and not np.all(np.isnan(m[r]))]
    return [r for r in usable if table.systems[r] not in refs_set], usable


def system_scores(table: ScoreTable, metric: str, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(human, metric) system-level scores of ``rows``: given ``.sys.score`` values, else means."""
    h = table.sys_human[rows] if table.sys_human is not None else system_means(table.human[rows])
    m = table.sys_metrics[metric][rows] if metric in table.sys_metrics \
        else system_means(table.metrics[metric][rows])
    return h, m


def _weighted_sys_means(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(ok, x, 0.0).T) / (w @ ok.T)


def _resample_weights(n_items: int, n: int, seed: int) -> np.ndarray:
    """(n, items) copy counts of ``n`` bootstrap resamples of items, drawn with replacement."""
    draws = np.random.default_rng(seed).integers(0, n_items, size=(n, n_items))
    flat = (draws + n_items * np.arange(n)[:, None]).ravel()
    return np.bincount(flat, minlength=n * n_items).reshape(n, n_items)


def meta_evaluate(table: ScoreTable, metric: str, *, refs: RefsPolicy = "wmt",
                  ref_systems: Iterable[str] | None = None, std_refs: Iterable[str] | None = None,
                  bootstrap: int = 0, seed: int = 0, confidence: float = 0.95,
                  recalibrate: bool = False, chunk: int = 64, spa_permutations: int = 1000) -> MetaEvalResult:
    """All statistics of ``metric`` against the table's human scores.

    ``refs`` picks the systems: ``wmt`` (default, as the WMT22/23 results): acc_eq with human
    references as extra systems, everything else over MT systems only; ``exclude``/``include``:
    every statistic without/with them. See :func:`select_systems` for ``ref_systems``/``std_refs``.

    ``bootstrap`` > 0 resamples items (segments) with replacement that many times (seeded by
    ``seed``) and reports percentile intervals at ``confidence``. System-level scores are then
    recomputed from the resampled segments (no interval when they were given as system scores).
    acc_eq keeps the epsilon calibrated on all items, as mt-metrics-eval's significance tests do;
    ``recalibrate=True`` re-optimises it in every resample (slower).

    ``sys_soft_acc`` is soft pairwise accuracy (WMT24) over the items every system has both
    scores for, with ``spa_permutations`` sign masks (seed 4, as mt-metrics-eval's ``pce.py``).
    """
    if metric not in table.metrics:
        raise KeyError(f"no metric '{metric}'; have: {', '.join(table.metrics)}")
    if refs not in ("wmt", "exclude", "include"):
        raise ValueError(f"refs must be wmt, exclude or include, not {refs!r}")
    mt, usable = select_systems(table, metric, ref_systems, std_refs)
    plain_rows = usable if refs == "include" else mt
    acc_rows = mt if refs == "exclude" else usable
    hp, mp = table.human[plain_rows], table.metrics[metric][plain_rows]
    sys_h, sys_m = system_scores(table, metric, plain_rows)
    acc, pairs = pairwise_accuracy(sys_h, sys_m)
    sweep = TieSweep(table.human[acc_rows], table.metrics[metric][acc_rows])
    best, eps = sweep.best()
    soft, _ = soft_pairwise_accuracy(hp, mp, num_permutations=spa_permutations, seed=4)
    values = {"sys_acc": acc, "sys_pearson": pearson(sys_h, sys_m), "sys_soft_acc": soft,
              "seg_kendall": kendall_tau(hp, mp), "seg_kendall_item": kendall_tau(hp, mp, "item"),
              "seg_pearson": pearson(hp, mp), "acc_eq": float(best[0])}
    plain, with_refs = [table.systems[r] for r in plain_rows], [table.systems[r] for r in acc_rows]
    result = MetaEvalResult(metric, values, float(eps[0]),
                            {k: with_refs if k == "acc_eq" else plain for k in STATISTICS},
                            pairs, bootstrap=max(bootstrap, 0), confidence=confidence)
    if bootstrap > 0:
        result.ci = _bootstrap(table, metric, hp, mp, sweep, float(eps[0]), bootstrap, seed,
                               confidence, recalibrate, chunk)
    return result


def _bootstrap(table: ScoreTable, metric: str, hp: np.ndarray, mp: np.ndarray, sweep: TieSweep,
               epsilon: float, n: int, seed: int, confidence: float, recalibrate: bool,
               chunk: int) -> dict[str, tuple[float, float]]:
    w = _resample_weights(table.n_items, n, seed)
    samples: dict[str, np.ndarray] = {}
    ok = _present(hp, mp)
    tau = TauB(hp[ok], mp[ok], units=np.nonzero(ok)[1])
    samples["seg_kendall"] = np.concatenate([tau.tau_b(w[b:b + chunk]) for b in range(0, n, chunk)])
    wf = w.astype(float)
    samples["seg_kendall_item"] = _nanmean(np.broadcast_to(tau_b_per_item(hp, mp), w.shape), wf)
    samples["seg_pearson"] = _pearson_from_moments(wf @ _moments(*_centered(hp, mp), axis=0))
    if recalibrate:
        samples["acc_eq"] = np.concatenate([sweep.best(w[b:b + chunk])[0] for b in range(0, n, chunk)])
    else:
        samples["acc_eq"] = _nanmean(np.broadcast_to(sweep.item_accuracies(epsilon), w.shape), wf)
    if table.sys_human is None and metric not in table.sys_metrics:
        bh, bm = _weighted_sys_means(hp, wf), _weighted_sys_means(mp, wf)
        i, j = _pairs(bh.shape[1])
        # a system none of whose segments was drawn has no mean in this resample: its pairs are
        # skipped, not counted wrong (which would widen the interval downwards)
        valid = ~(np.isnan(bh[:, i]) | np.isnan(bh[:, j]) | np.isnan(bm[:, i]) | np.isnan(bm[:, j]))
        agree = (np.sign(bh[:, i] - bh[:, j]) == np.sign(bm[:, i] - bm[:, j])) & valid
        with np.errstate(invalid="ignore", divide="ignore"):
            samples["sys_acc"] = np.where(valid.any(1), agree.sum(1) / np.maximum(valid.sum(1), 1), np.nan)
        samples["sys_pearson"] = _pearson_lines(bh, bm, axis=1)
    lo, hi = 50 * (1 - confidence), 50 * (1 + confidence)
    ci = {}
    for k, v in samples.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN samples give a NaN interval
            ci[k] = (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi)))
    return ci


__all__ = ["AverageBy", "MetaEvalResult", "RefsPolicy", "STATISTICS", "TauB", "TieCalibration", "TieSweep",
           "default_ref_systems", "kendall_tau", "meta_evaluate", "metric_refs", "pairwise_accuracy",
           "pearson", "select_systems", "soft_pairwise_accuracy", "system_means", "system_scores",
           "tau_b_per_item", "tau_stats", "tie_calibrated_accuracy"]

"""Correlation statistics of human and metric score matrices, as google-research/mt-metrics-eval
computes them (``stats.py``, ``tau_optimization.py``): Kendall tau-b (flat or averaged), Pearson
(flat or averaged, centred two-pass as numpy/scipy), system pairwise accuracy, and acc_eq with
tie calibration. :mod:`.meta` puts them together per metric, with the bootstrap.

Score matrices are float arrays shaped ``(systems, items)``; NaN marks a missing score. A cell is
used only when both the human and the metric score are present. Everything is vectorised with numpy
and takes per-item weights, so a bootstrap resample of items is a weight vector (an item drawn k
times weighs k), evaluated for many resamples at once: the tie calibration sorts the pair deltas
once and sweeps epsilons with cumulative sums; tau-b counts discordant pairs by radix levels whose
sort orders are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import numpy.typing as npt

AverageBy = Literal["none", "item", "sys"]


def _as_matrix(x: npt.ArrayLike) -> np.ndarray:
    """A float (systems, items) matrix; a 1-D vector is one item scored for each system."""
    arr = np.asarray(x, dtype=float)
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


def _group_starts(sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


class _TieGroups:
    """Groups of equal values, for weighted tie counts: a group of total weight G holds
    G(G-1)/2 pairs (copies of one cell included)."""

    def __init__(self, group_starts: np.ndarray, units_sorted: np.ndarray, n_units: int) -> None:
        sizes = np.diff(np.r_[group_starts, units_sorted.size])
        multi = np.repeat(sizes > 1, sizes)
        self.units = units_sorted[multi]  # cells of groups with more than one cell
        sizes_multi = sizes[sizes > 1]
        self.starts = np.r_[0, np.cumsum(sizes_multi)[:-1]].astype(np.intp) if sizes_multi.size \
            else np.zeros(0, np.intp)
        self.singles = np.bincount(units_sorted[~multi], minlength=n_units).astype(np.int64)

    def pairs(self, w: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Tied pairs per resample, for unit copy counts ``w`` (resamples, units)."""
        w64 = w.astype(np.int64)
        sq = (w64 * w64) @ self.singles
        if self.units.size:
            g = np.add.reduceat(np.take(w64, self.units, axis=1), self.starts, axis=1)
            sq = sq + (g * g).sum(1)
        return (sq - total) // 2


class TauB:
    """Kendall tau-b of two fixed vectors, evaluated for any weights of resampling units.

    Each cell belongs to a unit (by default itself; for a bootstrap over segments, its item), and a
    weight vector says how many copies of each unit a resample holds. Discordant pairs are counted
    on the human ranks after sorting by (metric, human): a pair is decided at the highest bit where
    the two ranks differ, so per bit level, within groups sharing the higher bits, we add the weight
    of the 1s preceding each 0. Orders and indices do not depend on the weights and are computed
    once; each resample costs a few cumulative sums and gathers per bit level.
    """

    def __init__(self, human: npt.ArrayLike, metric: npt.ArrayLike,
                 units: npt.ArrayLike | None = None) -> None:
        y, x = np.asarray(human, dtype=float).ravel(), np.asarray(metric, dtype=float).ravel()
        n = x.size
        unit = np.arange(n) if units is None else np.asarray(units, dtype=np.intp).ravel()
        self.n_units = int(unit.max()) + 1 if n else 0
        self.cells_per_unit = np.bincount(unit, minlength=self.n_units).astype(np.int64)
        order = np.lexsort((y, x))  # by metric, then human: equal-metric pairs never invert
        xs, ys, us = x[order], y[order], unit[order]
        ranks = np.unique(ys, return_inverse=True)[1].ravel().astype(np.int64)
        self.levels = []
        for b in range((int(ranks.max()).bit_length() if n else 0) - 1, -1, -1):
            level_order = np.argsort(ranks >> (b + 1), kind="stable")
            prefix = (ranks >> (b + 1))[level_order]
            bit = ((ranks[level_order] >> b) & 1).astype(bool)
            ones_before = np.cumsum(bit) - bit
            starts = np.r_[True, prefix[1:] != prefix[:-1]]
            group_start = np.flatnonzero(starts)[np.cumsum(starts) - 1]
            u = us[level_order]
            self.levels.append((u[bit], u[~bit], ones_before[~bit], ones_before[group_start][~bit]))
        joint = np.flatnonzero(np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])]) if n \
            else np.zeros(0, np.intp)
        y_order = np.argsort(ys, kind="stable")
        self.ties_x = _TieGroups(_group_starts(xs), us, self.n_units)
        self.ties_y = _TieGroups(_group_starts(ys[y_order]), us[y_order], self.n_units)
        self.ties_both = _TieGroups(joint, us, self.n_units)

    def stats(self, weights: npt.ArrayLike | None = None) -> np.ndarray:
        """(resamples, 5) int array of ``con, dis, ties_human_only, ties_metric_only, ties_both``.

        ``weights`` (resamples, units) gives each unit's number of copies; default one each.
        """
        w = np.ones((1, self.n_units), np.int64) if weights is None else np.atleast_2d(weights)
        if w.dtype.kind not in "iu" or (w.size and w.min() < 0):
            raise ValueError("weights are copy counts: non-negative integers")
        n_w = w.astype(np.int64) @ self.cells_per_unit
        # int32 halves memory traffic; every partial sum below is at most n_w * max(w)
        small = w.size == 0 or int(n_w.max(initial=0)) * int(w.max(initial=0)) < 2**31
        w = w.astype(np.int32 if small else np.int64)
        dis = np.zeros(w.shape[0], np.int64)
        for one_units, zero_units, ones_before, ones_before_group in self.levels:
            cum = np.zeros((w.shape[0], one_units.size + 1), w.dtype)
            np.cumsum(np.take(w, one_units, axis=1), axis=1, out=cum[:, 1:])
            above = np.take(cum, ones_before, axis=1) - np.take(cum, ones_before_group, axis=1)
            dis += (above * np.take(w, zero_units, axis=1)).sum(1, dtype=np.int64)
        total = (n_w * n_w - n_w) // 2
        both = self.ties_both.pairs(w, n_w)
        x_ties, y_ties = self.ties_x.pairs(w, n_w), self.ties_y.pairs(w, n_w)
        con = total - dis - (x_ties - both) - (y_ties - both) - both
        return np.stack([con, dis, y_ties - both, x_ties - both, both], axis=1)

    def tau_b(self, weights: npt.ArrayLike | None = None) -> np.ndarray:
        """Tau-b per resample; NaN where either side is constant."""
        con, dis, th, tm, tb = self.stats(weights).T.astype(float)
        total = con + dis + th + tm + tb
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (con - dis) / np.sqrt(total - tm - tb) / np.sqrt(total - th - tb)
        return np.where((total > 0) & (th + tb < total) & (tm + tb < total), tau, np.nan)


def tau_stats(human: npt.ArrayLike, metric: npt.ArrayLike) -> tuple[int, int, int, int, int]:
    """``(concordant, discordant, ties_human_only, ties_metric_only, ties_both)`` of two vectors."""
    con, dis, th, tm, tb = TauB(human, metric).stats()[0]
    return int(con), int(dis), int(th), int(tm), int(tb)


def _present(human: np.ndarray, metric: np.ndarray) -> np.ndarray:
    return ~(np.isnan(human) | np.isnan(metric))


def _pairs(n_sys: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_sys, k=1)


def _nanmean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of non-NaN values along the last axis, optionally weighted; NaN when none."""
    ok = ~np.isnan(values)
    w = np.ones_like(values) if weights is None else np.broadcast_to(weights, values.shape)
    num, den = (np.where(ok, values, 0.0) * w).sum(-1), (ok * w).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def tau_b_per_item(human: npt.ArrayLike, metric: npt.ArrayLike) -> np.ndarray:
    """Tau-b of each item (column) over systems, vectorised; NaN where undefined."""
    h, m = _as_matrix(human), _as_matrix(metric)
    i, j = _pairs(h.shape[0])
    dh, dm = h[i] - h[j], m[i] - m[j]
    valid = ~(np.isnan(dh) | np.isnan(dm))
    sh, sm = np.sign(np.where(valid, dh, 0.0)), np.sign(np.where(valid, dm, 0.0))
    untied_h, untied_m = (sh != 0).sum(0), (sm != 0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (sh * sm).sum(0) / np.sqrt(untied_h) / np.sqrt(untied_m)
    return np.where((untied_h > 0) & (untied_m > 0), tau, np.nan)


def kendall_tau(human: npt.ArrayLike, metric: npt.ArrayLike, average_by: AverageBy = "none") -> float:
    """Kendall tau-b between human and metric (systems x items) matrices.

    ``none``: one tau over all present cells; ``item``/``sys``: a tau per column/row, NaNs (a
    constant vector) dropped, then the plain mean (mt-metrics-eval's default macro average).
    """
    h, m = _as_matrix(human), _as_matrix(metric)
    if average_by == "item":
        return float(_nanmean(tau_b_per_item(h, m)))
    if average_by == "sys":
        return float(_nanmean(np.array([kendall_tau(a, b) for a, b in zip(h, m)])))
    if average_by != "none":
        raise ValueError(f"average_by must be none, item or sys, not {average_by!r}")
    ok = _present(h, m)
    return float(TauB(h[ok], m[ok]).tau_b()[0]) if ok.sum() >= 2 else float("nan")


def _pearson_from_moments(mom: np.ndarray) -> np.ndarray:
    """Pearson r from (..., 6) sums ``n, Σx, Σy, Σx², Σy², Σxy``; NaN for constant input.
    Only for weighted resamples of data centred beforehand (see :func:`_centered`): raw moments
    of uncentred, nearly constant data lose every significant digit."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(mom, -1, 0)
    vx, vy, cov = n * sxx - sx * sx, n * syy - sy * sy, n * sxy - sx * sy
    scale_x, scale_y = np.maximum(n * sxx, 1e-300), np.maximum(n * syy, 1e-300)
    ok = (n >= 2) & (vx > 1e-12 * scale_x) & (vy > 1e-12 * scale_y)  # constant -> NaN, as mt-metrics-eval
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, cov / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)


def _centered(h: np.ndarray, m: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``h`` and ``m`` minus the mean of their jointly present cells (along ``axis``, or over
    all cells): Pearson is shift-invariant, and centred moments keep their precision."""
    ok = _present(h, m)
    out = []
    for v in (h, m):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(ok, v, 0.0).sum(axis, keepdims=True) / np.maximum(ok.sum(axis, keepdims=True), 1)
        out.append(np.where(ok, v - mean, np.nan))
    return out[0], out[1]


def _constant(v: np.ndarray, ok: np.ndarray, axis: int) -> np.ndarray:
    """Whether the present cells of each line of ``v`` hold one value (mt-metrics-eval's
    ``is_constant_array``: exact equality, so that a nearly constant vector still correlates)."""
    hi = np.where(ok, v, -np.inf).max(axis)
    lo = np.where(ok, v, np.inf).min(axis)
    return hi <= lo


def _pearson_lines(h: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """Pearson r of each column (``axis=0``) or row (``axis=1``) by the centred two-pass formula,
    as numpy/scipy compute it; NaN for fewer than 2 cells or a constant line."""
    ok = _present(h, m)
    ch, cm = _centered(h, m, axis)
    ch, cm = np.where(ok, ch, 0.0), np.where(ok, cm, 0.0)
    sxx, syy, sxy = (cm * cm).sum(axis), (ch * ch).sum(axis), (cm * ch).sum(axis)
    bad = (ok.sum(axis) < 2) | _constant(h, ok, axis) | _constant(m, ok, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(np.where(bad, 1.0, sxx * syy))
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0))


def _moments(h: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    ok = _present(h, m)
    x, y = np.where(ok, m, 0.0), np.where(ok, h, 0.0)
    return np.stack([ok.sum(axis), x.sum(axis), y.sum(axis), (x * x).sum(axis), (y * y).sum(axis),
                     (x * y).sum(axis)], axis=-1).astype(float)


def pearson(human: npt.ArrayLike, metric: npt.ArrayLike, average_by: AverageBy = "none") -> float:
    """Pearson's r over present cells, flattened (``none``) or averaged per item/system."""
    h, m = _as_matrix(human), _as_matrix(metric)
    if average_by == "none":
        ok = _present(h, m)
        if ok.sum() < 2:
            return float("nan")
        x, y = m[ok], h[ok]
        if np.all(x == x[0]) or np.all(y == y[0]):
            return float("nan")
        return float(np.corrcoef(y, x)[0, 1])
    if average_by not in ("item", "sys"):
        raise ValueError(f"average_by must be none, item or sys, not {average_by!r}")
    return float(_nanmean(_pearson_lines(h, m, axis=0 if average_by == "item" else 1)))


def pairwise_accuracy(human: npt.ArrayLike | Sequence[npt.ArrayLike],
                      metric: npt.ArrayLike | Sequence[npt.ArrayLike]) -> tuple[float, int]:
    """System-level pairwise accuracy and its number of pairs, pooled over groups.

    Pass one vector of system scores each (one language pair), or a list of such vectors (one per
    language pair: pairs are formed within a group and all pairs are pooled). Systems with a
    missing (NaN) score are skipped. A human tie counts as correct only if the metric also ties.
    """
    h_any: Any = human
    m_any: Any = metric
    nested = len(h_any) > 0 and np.ndim(h_any[0]) > 0
    groups: list[tuple[Any, Any]] = list(zip(h_any, m_any)) if nested else [(h_any, m_any)]
    correct = pairs = 0
    for h, m in groups:
        h, m = np.asarray(h, dtype=float), np.asarray(m, dtype=float)
        ok = _present(h, m)
        h, m = h[ok], m[ok]
        i, j = _pairs(h.size)
        correct += int((np.sign(h[i] - h[j]) == np.sign(m[i] - m[j])).sum())
        pairs += i.size
    return (correct / pairs if pairs else float("nan")), pairs


def system_means(scores: npt.ArrayLike) -> np.ndarray:
    """Mean of each system's present segment scores (NaN for a system with none)."""
    return _nanmean(_as_matrix(scores))


@dataclass
class TieCalibration:
    """Result of :func:`tie_calibrated_accuracy`: best accuracy, its epsilon, the whole sweep."""

    accuracy: float
    epsilon: float
    thresholds: np.ndarray
    accuracies: np.ndarray


class TieSweep:
    """All system pairs of every item, sorted once by ``|metric diff|``, for the epsilon sweep.

    A pair is correct with no tie introduced when ``sign(human diff) == sign(metric diff)``, and
    correct once the metric calls it a tie iff the humans tie; raising epsilon past a pair's
    ``|metric diff|`` moves it from the first case to the second.
    """

    def __init__(self, human: npt.ArrayLike, metric: npt.ArrayLike) -> None:
        h, m = _as_matrix(human), _as_matrix(metric)
        i, j = _pairs(h.shape[0])
        dh, dm = h[i] - h[j], m[i] - m[j]  # (pairs, items)
        valid = ~(np.isnan(dh) | np.isnan(dm))
        self.n_items = h.shape[1]
        self.pairs_per_item = valid.sum(0)
        _, item = np.nonzero(valid)
        dh, dm = dh[valid], dm[valid]
        correct_now = (np.sign(dh) == np.sign(dm)).astype(float)
        self.correct_per_item = np.bincount(item, weights=correct_now, minlength=self.n_items)
        diff = np.abs(dm)
        order = np.argsort(diff, kind="stable")
        self.item = item[order]
        self.gain = ((dh == 0).astype(float) - correct_now)[order]
        diff = self.sorted_diff = diff[order]
        self.last_of_value = np.flatnonzero(np.r_[diff[1:] != diff[:-1], True]) if diff.size \
            else np.zeros(0, dtype=np.intp)
        # candidates: 0 (no tie added), then every distinct |metric diff|; 0 only once
        self._lead = not (diff.size and diff[0] == 0)
        self.thresholds = np.r_[[0.0] * self._lead, diff[self.last_of_value]]

    def accuracies(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Accuracy at every threshold, shape (resamples, thresholds).

        ``weights`` (resamples, items) counts each item's copies; default one of each.
        """
        w = np.ones((1, self.n_items)) if weights is None else np.atleast_2d(weights).astype(float)
        has_pairs = self.pairs_per_item > 0
        per_pair = np.divide(1.0, self.pairs_per_item, out=np.zeros(self.n_items), where=has_pairs)
        w_pair = w * per_pair
        start = (w_pair * self.correct_per_item).sum(1, keepdims=True)
        sweep = np.cumsum(w_pair[:, self.item] * self.gain, axis=1)[:, self.last_of_value]
        denom = (w * has_pairs).sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.concatenate([start] * self._lead + [start + sweep], axis=1) / denom

    def best(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best accuracy and its (smallest) epsilon per resample."""
        acc = self.accuracies(weights)
        idx = np.where(np.isnan(acc), -np.inf, acc).argmax(1)
        best = acc[np.arange(acc.shape[0]), idx]
        return best, np.where(np.isnan(best), 0.0, self.thresholds[idx])

    def item_accuracies(self, epsilon: float) -> np.ndarray:
        """Accuracy of each item at a fixed ``epsilon``; NaN for items without pairs."""
        upto = int(np.searchsorted(self.sorted_diff, epsilon, side="right"))
        correct = self.correct_per_item + np.bincount(self.item[:upto], weights=self.gain[:upto],
                                                      minlength=self.n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pairs_per_item > 0, correct / self.pairs_per_item, np.nan)


def tie_calibrated_accuracy(human: npt.ArrayLike, metric: npt.ArrayLike) -> TieCalibration:
    """acc_eq with tie calibration, averaged over items (columns) that have at least one pair.

    Same as mt-metrics-eval ``KendallWithTiesOpt(variant="acc23", average_by="item",
    sample_rate=1.0)``. A 1-D input is a single item.
    """
    sweep = TieSweep(human, metric)
    best, eps = sweep.best()
    return TieCalibration(float(best[0]), float(eps[0]), sweep.thresholds, sweep.accuracies()[0])


__all__ = ["AverageBy", "TauB", "TieCalibration", "TieSweep", "kendall_tau", "pairwise_accuracy", "pearson",
           "system_means", "tau_b_per_item", "tau_stats", "tie_calibrated_accuracy"]

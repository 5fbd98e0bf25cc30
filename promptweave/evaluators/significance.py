"""What WMT added after acc_eq: soft pairwise accuracy and significance clusters of metrics.

- :func:`pairwise_p_values` / :func:`soft_pairwise_accuracy`: the WMT24 system-level statistic
  (Thompson et al. 2024), as mt-metrics-eval's ``pce.py``: for every pair of systems, the
  p-value of a paired permutation test that system i beats system j (sums of segment scores,
  one random sign mask shared by all pairs), from human and from metric scores;
  SPA = 1 - mean |p_human - p_metric| over the pairs.
- :func:`permutation_p_value`: PERM-BOTH (Deutsch et al. 2021), as mt-metrics-eval's
  ``stats.PermutationSigDiff``: both metrics' scores are z-scored, each cell's two scores are
  swapped with probability 1/2, and the p-value is the share of draws whose difference is at
  least the observed one.
- :func:`significance_clusters`: mt-metrics-eval's ``data.CompareMetrics`` + ``AssignRanks``:
  metrics sorted by decreasing statistic (name second), a metric starts a new cluster when a
  metric of the current cluster beats it significantly.

Score matrices are ``(systems, items)`` with NaN for a missing score, as in :mod:`.meta`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .mtme import ScoreTable

#: statistics the permutation test supports: name -> level ("seg" cells or "sys" vectors)
CLUSTER_STATISTICS = {"sys_acc": "sys", "sys_pearson": "sys", "seg_pearson": "seg",
                      "seg_kendall_item": "seg", "seg_kendall": "seg"}
MAX_PERMUTATIONS = 100_000


def _masks(num_permutations: int, num_segments: int, seed: int | None, exact: bool) -> np.ndarray:
    """(draws, segments) of +1/-1: random as ``pce.py`` (rng.random rounded), or every mask."""
    if exact:
        if num_segments > 16:
            raise ValueError("exact permutation p-values enumerate 2^segments masks; at most 16 segments")
        return np.array(list(product((1.0, -1.0), repeat=num_segments)), dtype=np.float64)
    rng = np.random.default_rng(seed)
    return np.rint(rng.random(size=(num_permutations, num_segments), dtype=np.float32)) * 2.0 - 1.0


def pairwise_p_values(seg_scores: npt.ArrayLike, num_permutations: int = 1000, seed: int | None = 4,
                      exact: bool = False) -> np.ndarray:
    """``(systems, systems)`` matrix whose upper triangle holds the p-value that system i is
    better than system j (NaN elsewhere). ``seg_scores`` must be complete (no NaN); ``exact``
    enumerates every sign mask instead of drawing ``num_permutations`` (tiny inputs only)."""
    scores = np.asarray(seg_scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("pairwise p-values need every system scored on every segment")
    masks = _masks(num_permutations, scores.shape[1], seed, exact)
    sys_scores = scores.sum(1)
    partial = masks @ scores.T  # (draws, systems)
    n = scores.shape[0]
    p = np.full((n, n), np.nan)
    i, j = np.triu_indices(n, 1)
    null = partial[:, i] - partial[:, j]
    # a tolerance for the float rounding of equal sums computed in two orders
    tol = 1e-9 * np.maximum(np.abs(sys_scores[i] - sys_scores[j]), 1.0)
    p[i, j] = (null >= (sys_scores[i] - sys_scores[j]) - tol).mean(0)
    return p


def soft_pairwise_accuracy(human: npt.ArrayLike, metric: npt.ArrayLike, num_permutations: int = 1000,
                           seed: int | None = 4, exact: bool = False) -> tuple[float, int]:
    """Soft pairwise accuracy and its number of system pairs, over the items that every system
    has both scores for. Pass lists of matrices (one per language pair) to pool the pairs."""
    groups = list(zip(human, metric)) if isinstance(human, (list, tuple)) else [(human, metric)]
    errors: list[np.ndarray] = []
    for h, m in groups:
        h, m = np.asarray(h, dtype=float), np.asarray(m, dtype=float)
        keep = ~(np.isnan(h) | np.isnan(m)).any(0)
        if h.shape[0] < 2 or not keep.any():
            continue
        ph = pairwise_p_values(h[:, keep], num_permutations, seed, exact)
        pm = pairwise_p_values(m[:, keep], num_permutations, seed, exact)
        i, j = np.triu_indices(h.shape[0], 1)
        errors.append(np.abs(ph[i, j] - pm[i, j]))
    pooled = np.concatenate(errors) if errors else np.zeros(0)
    return (float(1.0 - pooled.mean()) if pooled.size else float("nan")), int(pooled.size)


def _zscore(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else v - v.mean()


def permutation_p_value(stat: Callable[[np.ndarray], float], human: np.ndarray, m1: np.ndarray,
                        m2: np.ndarray, k: int = 1000, seed: int | None = 0, block_size: int = 1000,
                        early_min: float = 0.02, early_max: float = 0.5) -> tuple[float, float, int]:
    """PERM-BOTH p-value that ``m2`` correlates better than ``m1`` with ``human``:
    ``(p, observed delta, draws used)``. ``stat(metric)`` scores one metric array shaped like
    ``human``; cells missing in any of the three are left out (NaN) for both metrics."""
    ok = ~(np.isnan(human) | np.isnan(m1) | np.isnan(m2))
    z1, z2 = np.full(m1.shape, np.nan), np.full(m2.shape, np.nan)
    z1[ok], z2[ok] = _zscore(m1[ok]), _zscore(m2[ok])
    delta = _nan0(stat(z2)) - _nan0(stat(z1))
    rng = np.random.default_rng(seed)
    large, i = 0, 0
    for i in range(1, k + 1):
        w = rng.binomial(1, 0.5, size=m1.shape).astype(bool)
        a, b = np.where(w, z1, z2), np.where(w, z2, z1)
        if _nan0(stat(b)) - _nan0(stat(a)) >= delta:
            large += 1
        if i % block_size == 0 and not early_min <= large / i <= early_max:
            break
    return (large / i if i else float("nan")), float(delta), i


def _nan0(x: float) -> float:
    return 0.0 if np.isnan(x) else float(x)  # mt-metrics-eval: no finite value averages to 0


def assign_ranks(sig_matrix: np.ndarray, pval: float) -> list[int]:
    """mt-metrics-eval's ``AssignRanks``: rank r holds the metrics not beaten significantly by
    any metric of rank r; ``sig_matrix[i, j]`` (j > i) is the p-value that j is not worse."""
    ranks, current, start = [], 1, 0
    for i in range(sig_matrix.shape[0]):
        if np.any(sig_matrix[start:i, i] <= pval):
            current, start = current + 1, i
        ranks.append(current)
    return ranks


@dataclass
class Clusters:
    """Significance clusters of metrics for one statistic, best first."""

    statistic: str
    order: list[str]
    values: list[float]
    ranks: list[int]
    p_values: np.ndarray
    k: int

    def to_dict(self) -> dict[str, object]:
        n = len(self.order)
        return {"statistic": self.statistic, "k": self.k,
                "ranking": [{"metric": m, "value": v, "rank": r}
                            for m, v, r in zip(self.order, self.values, self.ranks)],
                "p_values": [[None if j <= i else float(self.p_values[i, j]) for j in range(n)] for i in range(n)]}


def significance_clusters(statistic: str, stat: Callable[[np.ndarray], float], human: np.ndarray,
                          metrics: dict[str, np.ndarray], k: int = 1000, seed: int = 0,
                          pval: float = 0.05) -> Clusters:
    """Rank ``metrics`` by ``stat`` (higher is better) into clusters of metrics not significantly
    different at ``pval``, by pairwise PERM-BOTH tests of ``k`` draws each."""
    if not 0 < k <= MAX_PERMUTATIONS:
        raise ValueError(f"permutations must be in 1..{MAX_PERMUTATIONS}, not {k}")
    values = {name: _nan0(stat(m)) for name, m in metrics.items()}
    order = sorted(values, key=lambda name: (-values[name], name))
    n = len(order)
    sig = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            # p-value that the better-ranked metric i beats j only by chance
            sig[i, j] = permutation_p_value(stat, human, metrics[order[j]], metrics[order[i]], k,
                                            seed + i * n + j)[0]
    return Clusters(statistic, order, [values[m] for m in order], assign_ranks(sig, pval), sig, k)


def stat_function(statistic: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """``f(human, metric) -> value`` for a statistic name of :data:`CLUSTER_STATISTICS`."""
    from . import meta

    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "sys_acc": lambda h, m: meta.pairwise_accuracy(h, m)[0],
        "sys_pearson": meta.pearson,
        "seg_pearson": meta.pearson,
        "seg_kendall": meta.kendall_tau,
        "seg_kendall_item": lambda h, m: meta.kendall_tau(h, m, "item"),
    }
    if statistic not in functions:
        raise ValueError(f"significance clusters support {', '.join(CLUSTER_STATISTICS)}, not {statistic!r}")
    return functions[statistic]


def cluster_metrics(table: "ScoreTable", statistic: str, metrics: list[str] | None = None, *, k: int = 1000,
                    seed: int = 0, pval: float = 0.05, ref_systems: list[str] | None = None,
                    std_refs: list[str] | None = None) -> Clusters:
    """Significance clusters of the table's metrics for ``statistic``, over the MT systems that
    every compared metric scores (system level: mean segment scores, or given system scores)."""
    from . import meta

    if statistic not in CLUSTER_STATISTICS:
        raise ValueError(f"significance clusters support {', '.join(CLUSTER_STATISTICS)}, not {statistic!r}")
    names = list(metrics or table.metrics)
    rows = set(range(len(table.systems)))
    for name in names:
        rows &= set(meta.select_systems(table, name, ref_systems, std_refs)[0])
    chosen = sorted(rows)
    if len(chosen) < 2:
        from ..errors import DataError

        raise DataError(f"significance clusters need 2 or more systems scored by every metric ({', '.join(names)}); "
                        f"found {len(chosen)}")
    f = stat_function(statistic)
    if CLUSTER_STATISTICS[statistic] == "sys":
        human = meta.system_scores(table, names[0], chosen)[0]
        scored = {n: meta.system_scores(table, n, chosen)[1] for n in names}
    else:
        human = table.human[chosen]
        scored = {n: table.metrics[n][chosen] for n in names}
    return significance_clusters(statistic, lambda m: f(human, m), human, scored, k=k, seed=seed, pval=pval)


__all__ = ["CLUSTER_STATISTICS", "Clusters", "assign_ranks", "cluster_metrics", "pairwise_p_values", "permutation_p_value",
           "significance_clusters", "soft_pairwise_accuracy", "stat_function"]


"""Soft pairwise accuracy and significance clusters: hand-worked cases (exact permutation
p-values), the PERM-BOTH test's limits, and the WMT22 zh-en data with real LLM-judge scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptweave.evaluators.meta import meta_evaluate
from promptweave.evaluators.mtme import ScoreTable, read_score_file, read_score_tsv, table_from_scores
from promptweave.evaluators.significance import (assign_ranks, cluster_metrics, pairwise_p_values,
                                                 permutation_p_value, soft_pairwise_accuracy)
from tests.evaluators.test_meta import TSV, needs_tsv

LLM = TSV.parent / "llm_mqm_scores"


def test_pairwise_p_values_by_hand():
    # A - B per segment: human d = (3, 2, 1), test delta 6; only the all-plus mask reaches it: 1/8
    # metric d = (1, 1, -2), delta 0; s1 + s2 - 2 s3 >= 0 for s3 = -1 (4 masks) or s1 = s2 = s3 = +1: 5/8
    human = [[3, 2, 1], [0, 0, 0]]
    metric = [[1, 1, 1], [0, 0, 3]]
    assert pairwise_p_values(human, exact=True)[0, 1] == pytest.approx(1 / 8)
    assert pairwise_p_values(metric, exact=True)[0, 1] == pytest.approx(5 / 8)
    spa, pairs = soft_pairwise_accuracy(np.array(human, float), np.array(metric, float), exact=True)
    assert (spa, pairs) == (pytest.approx(1 - abs(1 / 8 - 5 / 8)), 1)


def test_soft_pairwise_accuracy_pools_language_pairs_and_skips_incomplete_items():
    h1, m1 = np.array([[3, 2, 1], [0, 0, 0]], float), np.array([[1, 1, 1], [0, 0, 3]], float)
    h2 = np.array([[1, 1, math.nan], [0, 0, 5]], float)  # item 3 lacks a score: left out
    spa, pairs = soft_pairwise_accuracy([h1, h2], [m1, h2.copy()], exact=True)
    # pair 1: |1/8 - 5/8| = 1/2; pair 2: same scores, error 0 -> 1 - 1/4
    assert pairs == 2 and spa == pytest.approx(0.75)


def test_random_p_values_are_seeded_and_reverse():
    scores = np.random.default_rng(3).normal(size=(4, 50))
    a, b = pairwise_p_values(scores, seed=4), pairwise_p_values(scores, seed=4)
    np.testing.assert_array_equal(a, b)
    rev = pairwise_p_values(scores[::-1].copy(), seed=4)
    # p(i > j) + p(j > i) = 1 + P(null == observed) ~ 1 for continuous scores
    assert a[0, 3] + rev[0, 3] == pytest.approx(1.0, abs=0.01)


def test_assign_ranks_by_hand():
    # 0 beats 1 (p .01): 1 opens cluster 2; 1 vs 2 p .2: 2 stays in cluster 2 although 0 beats 2,
    # because only metrics of the current cluster count (mt-metrics-eval's AssignRanks)
    sig = np.array([[0, .01, .01], [0, 0, .2], [0, 0, 0]])
    assert assign_ranks(sig, 0.05) == [1, 2, 2]
    assert assign_ranks(np.array([[0, .3, .04], [0, 0, .3], [0, 0, 0]]), 0.05) == [1, 1, 2]


def test_permutation_test_limits():
    rng = np.random.default_rng(0)
    human = rng.normal(size=(5, 30))
    noise = rng.normal(size=(5, 30))
    pearson = lambda m: float(np.corrcoef(human[~np.isnan(m)], m[~np.isnan(m)])[0, 1])  # noqa: E731
    p_same, delta, _ = permutation_p_value(pearson, human, human.copy(), human.copy(), k=50)
    assert p_same == 1.0 and delta == 0.0  # identical metrics never differ significantly
    p_better, delta, _ = permutation_p_value(pearson, human, noise, human + 0.1 * noise, k=200)
    assert p_better == 0.0 and delta > 0.5


def test_clusters_on_a_hand_made_table():
    rng = np.random.default_rng(1)
    human = rng.normal(size=(6, 40))
    good = human + 0.1 * rng.normal(size=human.shape)
    # twin: an affine copy of good (same z-scores): never significantly different from it
    metrics = {"good": good, "twin": 2 * good + 1, "noise": rng.normal(size=human.shape)}
    table = ScoreTable([f"s{i}" for i in range(6)], human, metrics)
    c = cluster_metrics(table, "seg_pearson", k=200, seed=2)
    assert c.order[-1] == "noise" and c.ranks[-1] == 2 and c.ranks[:2] == [1, 1]
    assert c.to_dict()["ranking"][0]["rank"] == 1


@needs_tsv
@pytest.mark.shared_data
def test_wmt22_clusters_with_real_llm_judge_scores():
    """MQM-APE (MQMPE) and GEMBA-style MQM scores of Llama3-70b and Tower-13b on WMT22 zh-en."""
    tsv = read_score_tsv(TSV)
    files = sorted(LLM.glob("zh-en.*.seg.score"))
    order = list(read_score_file(files[0]))
    human = {s: [None if math.isnan(x) else float(x) for x in tsv.human[tsv.systems.index(s)]] for s in order}
    table = table_from_scores(human, {f.name[6:-10]: read_score_file(f) for f in files})
    values = {m: meta_evaluate(table, m).values for m in table.metrics}
    assert values["MQMPE-Original-llama3-70b-inst-src"]["sys_soft_acc"] > \
        values["MQM-Original-llama3-70b-inst-src"]["sys_soft_acc"]
    c = cluster_metrics(table, "sys_pearson", k=300, seed=0)
    assert c.order[0] == "MQMPE-Original-llama3-70b-inst-src" and c.ranks[0] == 1
    assert c.ranks[-1] >= 2 and c.order[-1].endswith("tower-13b-inst-src")


def test_clusters_need_two_commonly_scored_systems():
    from promptweave.errors import DataError

    nan = math.nan
    table = ScoreTable(["A", "B"], np.array([[1.0, 2.0], [3.0, 4.0]]),
                       {"M": np.array([[1.0, 2.0], [nan, nan]]), "N": np.array([[nan, nan], [1.0, 2.0]])})
    with pytest.raises(DataError, match="2 or more systems scored by every metric"):
        cluster_metrics(table, "seg_pearson", k=10)

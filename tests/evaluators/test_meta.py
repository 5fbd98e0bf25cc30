"""Meta-evaluation statistics: hand-worked tables, brute-force cross-checks, and the published
WMT22 zh-en numbers from ../shared/data/README.md."""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from promptweave.errors import DataError
from promptweave.evaluators.meta import (TauB, TieSweep, default_ref_systems, kendall_tau, meta_evaluate,
                                         metric_refs, pairwise_accuracy, pearson, select_systems,
                                         system_means, tau_stats, tie_calibrated_accuracy)
from promptweave.evaluators.mtme import (ScoreTable, read_score_file, read_score_jsonl, read_score_tsv,
                                         table_from_scores, write_score_file)

NAN = math.nan


def shared_data() -> Path:
    env = os.environ.get("PROMPTWEAVE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


TSV = shared_data() / "metaeval" / "wmt22_zhen_seg_scores.tsv"
needs_tsv = pytest.mark.skipif(not TSV.exists(), reason=f"shared data not found: {TSV} "
                               "(set PROMPTWEAVE_SHARED_DATA to the shared/data folder)")


# ---------------------------------------------------------------- Kendall tau-b


def brute_tau_b(h, m, weights=None):
    """O(n^2) tau-b straight from the definition, counting copies of cells as separate cells."""
    h, m = list(h), list(m)
    if weights is not None:
        h = [x for x, w in zip(h, weights) for _ in range(w)]
        m = [x for x, w in zip(m, weights) for _ in range(w)]
    con = dis = th = tm = 0
    for i, j in itertools.combinations(range(len(h)), 2):
        dh, dm = np.sign(h[i] - h[j]), np.sign(m[i] - m[j])
        if dh == 0 and dm == 0:
            continue
        if dh == 0:
            th += 1
        elif dm == 0:
            tm += 1
        elif dh == dm:
            con += 1
        else:
            dis += 1
    n = con + dis + th + tm
    return (con - dis) / math.sqrt((n - tm) * (n - th)) if n - tm and n - th else NAN


@pytest.mark.parametrize("human, metric, expected", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [40, 30, 20, 10], -1.0),
    # by hand: pairs con 4, human-only tie (2,3), metric-only tie (3,4): 4 / sqrt(5 * 5)
    ([1, 2, 2, 3], [1, 2, 3, 3], 0.8),
    # by hand: con (1,2),(1,3); dis (2,3): (2 - 1) / 3
    ([1, 2, 3], [1, 3, 2], 1 / 3),
    ([1, 1, 1], [1, 2, 3], NAN),  # constant human: undefined, as scipy
])
def test_kendall_tau_b_by_hand(human, metric, expected):
    got = kendall_tau(human, metric)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_tau_stats_counts():
    # (con, dis, ties human only, ties metric only, ties both), by hand over the 10 pairs:
    # con 01 02 03 04 13 14; human-only 12; metric-only 23 24; both 34
    assert tau_stats([1, 2, 2, 3, 3], [1, 2, 3, 3, 3]) == (6, 0, 1, 2, 1)


def test_kendall_matches_brute_force_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        h, m = rng.integers(0, 5, n).astype(float), rng.integers(0, 7, n).astype(float)
        assert kendall_tau(h, m) == pytest.approx(brute_tau_b(h, m), nan_ok=True)


def test_kendall_averaging_and_missing_cells():
    human = np.array([[1.0, 5.0, NAN], [2.0, 4.0, 1.0], [3.0, 3.0, 2.0]])  # systems x items
    metric = np.array([[1.0, 1.0, 9.0], [2.0, 2.0, 8.0], [3.0, 3.0, 7.0]])
    # flat: NaN cell dropped; by item: +1, -1, -1 (item 3 has two systems left)
    assert kendall_tau(human, metric) == pytest.approx(brute_tau_b([1, 5, 2, 4, 1, 3, 3, 2],
                                                                   [1, 1, 2, 2, 8, 3, 3, 7]))
    assert kendall_tau(human, metric, "item") == pytest.approx(-1 / 3)


def test_weighted_tau_equals_duplicated_cells():
    rng = np.random.default_rng(3)
    h, m = rng.integers(0, 4, 40).astype(float), rng.normal(size=40).round(1)
    units = np.repeat(np.arange(10), 4)  # 10 items of 4 cells
    weights = rng.integers(0, 3, size=(5, 10))
    got = TauB(h, m, units=units).tau_b(weights)
    for row, w in zip(got, weights):
        assert row == pytest.approx(brute_tau_b(h, m, np.repeat(w, 4)), nan_ok=True)


# ---------------------------------------------------------------- acc_eq, tie calibration


def test_tau_optimization_cases_from_mt_metrics_eval():
    # mt_metrics_eval/tau_optimization_test.py: one item, four systems
    res = tie_calibrated_accuracy([1, 2, 3, 4], [0, 2, 6, 8])
    assert list(res.thresholds) == [0, 2, 4, 6, 8]
    assert list(res.accuracies) == pytest.approx([6 / 6, 4 / 6, 3 / 6, 1 / 6, 0 / 6])
    assert (res.epsilon, res.accuracy) == (0, 1.0)
    res = tie_calibrated_accuracy([1, 1, 1, 4], [0, 2, 6, 8])
    assert list(res.accuracies) == pytest.approx([3 / 6, 3 / 6, 4 / 6, 4 / 6, 3 / 6])
    assert res.epsilon == 4 and res.accuracy == pytest.approx(4 / 6)


def test_acc_eq_three_systems_by_hand():
    # items are columns; systems A, B, C are rows
    human = np.array([[0, -1, NAN], [0, 0, 0], [-5, 0, NAN]], dtype=float)
    metric = np.array([[9, 2, 1], [8, 6, 2], [1, 6, 3]], dtype=float)
    # item 1: AB human tie |dm| 1, AC and BC concordant (|dm| 8, 7)
    # item 2: AB and AC concordant (|dm| 4), BC tied on both sides
    # item 3: one system left, no pair, not averaged
    # eps 0: (2/3 + 1)/2; eps 1: (1 + 1)/2; eps 4: (1 + 1/3)/2; eps 7: (2/3 + 1/3)/2; eps 8: (1/3 + 1/3)/2
    res = tie_calibrated_accuracy(human, metric)
    assert list(res.thresholds) == [0, 1, 4, 7, 8]  # 0 once, as in mt-metrics-eval
    assert list(res.accuracies) == pytest.approx([5 / 6, 1, 2 / 3, 1 / 2, 1 / 3])
    assert res.epsilon == 1 and res.accuracy == pytest.approx(1.0)


def test_tie_sweep_weights_equal_duplicated_items():
    rng = np.random.default_rng(11)
    human = rng.integers(-3, 1, size=(5, 30)).astype(float)
    metric = rng.normal(size=(5, 30)).round(1)
    human[0, :4] = NAN
    sweep = TieSweep(human, metric)
    weights = rng.integers(0, 3, size=(4, 30))
    best, eps = sweep.best(weights)
    for b, w in enumerate(weights):
        cols = np.repeat(np.arange(30), w)
        ref = tie_calibrated_accuracy(human[:, cols], metric[:, cols])
        assert best[b] == pytest.approx(ref.accuracy)
        assert eps[b] == ref.epsilon
    at_eps = sweep.item_accuracies(float(eps[0]))
    cols = np.repeat(np.arange(30), weights[0])
    assert np.nanmean(at_eps[cols]) == pytest.approx(best[0])


# ---------------------------------------------------------------- system level, Pearson


def test_pairwise_accuracy_pooled():
    assert pairwise_accuracy([1, 2, 3], [10, 30, 20]) == (pytest.approx(2 / 3), 3)
    # pooled over two "language pairs": a human tie is right only if the metric ties too
    assert pairwise_accuracy([[1, 2, 3], [1, 1]], [[10, 30, 20], [0, 5]]) == (0.5, 4)
    assert pairwise_accuracy([[1, 1]], [[2, 2]]) == (1.0, 1)
    assert pairwise_accuracy([1, NAN, 3], [1, 5, 2]) == (1.0, 1)


def test_pearson_by_hand():
    # by hand: dx = (-1, 0, 1), dy = (-4/3, -1/3, 5/3): 3 / sqrt(2 * 14/3)
    assert pearson([1, 2, 4], [1, 2, 3]) == pytest.approx(3 / math.sqrt(28 / 3))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    human = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 3.0]])
    metric = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert pearson(human, metric, "item") == pytest.approx((3 / math.sqrt(28 / 3) - 1) / 2)
    assert list(system_means([[1.0, NAN, 3.0], [NAN, NAN, NAN]]))[0] == 2.0


# ---------------------------------------------------------------- tables and system selection


def toy_table() -> ScoreTable:
    systems = ["A", "B", "C", "refA", "refB"]
    human = np.array([[0, -1, -2, -1], [-1, -2, 0, 0], [-5, -1, -1, -3], [0, 0, 0, 0], [0, -1, 0, 0]], float)
    metric = np.array([[5, 4, 3, 4], [4, 3, 5, 6], [1, 4, 4, 2], [NAN] * 4, [6, 4, 5, 5]], float)
    src = np.array([[5, 4, 3, 4], [4, 3, 5, 6], [1, 4, 4, 2], [7, 7, 7, 7], [6, 4, 5, 5]], float)
    return ScoreTable(systems, human, {"M-refA": metric, "Q-src": src})


def test_select_systems_and_refs_policies():
    table = toy_table()
    assert default_ref_systems(table.systems + ["reference", "ref"]) == {"refA", "refB", "ref"}
    assert metric_refs("BLEU-refA", table.systems) == {"refA"} and metric_refs("Q-src", table.systems) == set()
    mt, usable = select_systems(table, "M-refA")
    assert [table.systems[i] for i in mt] == ["A", "B", "C"]
    assert [table.systems[i] for i in usable] == ["A", "B", "C", "refB"]
    # the source-based metric scores refA, but refA is the table's standard reference
    assert select_systems(table, "Q-src")[1] == usable
    assert len(select_systems(table, "Q-src", std_refs=[])[1]) == 5
    wmt = meta_evaluate(table, "M-refA")
    assert wmt.systems["seg_kendall"] == ["A", "B", "C"] and wmt.systems["acc_eq"] == ["A", "B", "C", "refB"]
    assert meta_evaluate(table, "M-refA", refs="exclude").systems["acc_eq"] == ["A", "B", "C"]
    inc = meta_evaluate(table, "M-refA", refs="include")
    assert inc.systems["seg_kendall"] == ["A", "B", "C", "refB"]
    assert inc.values["seg_kendall"] == pytest.approx(kendall_tau(table.human[[0, 1, 2, 4]],
                                                                  table.metrics["M-refA"][[0, 1, 2, 4]]))


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    table = toy_table()
    a = meta_evaluate(table, "M-refA", bootstrap=200, seed=5)
    b = meta_evaluate(table, "M-refA", bootstrap=200, seed=5)
    assert a.ci == b.ci and set(a.ci) == {"seg_kendall", "seg_kendall_item", "seg_pearson", "acc_eq",
                                          "sys_acc", "sys_pearson"}
    assert a.ci["seg_pearson"][0] <= a.values["seg_pearson"] <= a.ci["seg_pearson"][1]
    assert a.to_dict()["bootstrap"] == 200


# ---------------------------------------------------------------- files


def test_score_file_round_trip(tmp_path):
    path = tmp_path / "zh-en.X.seg.score"
    write_score_file(path, {"sysA": [1.5, None, -0.25], "sysB": [0.0, 2.0, 3.0]})
    assert read_score_file(path) == {"sysA": [1.5, None, -0.25], "sysB": [0.0, 2.0, 3.0]}
    table = table_from_scores(read_score_file(path), {"X": {"sysB": [1.0, 2.0, 3.0]}})
    assert table.systems == ["sysA", "sysB"] and np.isnan(table.metrics["X"][0]).all()
    with pytest.raises(DataError, match="expected 3"):
        table_from_scores(read_score_file(path), {"X": {"sysB": [1.0]}})


@pytest.mark.parametrize("text, message", [
    ("sysA\t1\nsysA\tabc\n", r":2: 'abc' is not a number"),
    ("sysA 1 2\n", r":1: expected 'system<TAB>score'"),
    ("", "no scores"),
])
def test_score_file_errors(tmp_path, text, message):
    path = tmp_path / "bad.seg.score"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_score_file(path)
    with pytest.raises(DataError, match="not found"):
        read_score_file(tmp_path / "missing.seg.score")


def test_tsv_and_jsonl_tables(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("system\tseg_id\tdomain\tmqm\tM\n"
                   "A\t0\tnews\t-1\t0.5\nA\t1\tnews\tNone\t0.7\nB\t0\tnews\t0\t0.9\nB\t1\tnews\t-2\tNone\n")
    table = read_score_tsv(tsv)
    assert table.systems == ["A", "B"] and table.items == ["0", "1"] and list(table.metrics) == ["M"]
    np.testing.assert_array_equal(table.human, [[-1, NAN], [0, -2]])
    tsv.write_text("system\tseg_id\tmqm\nA\t0\t1\nA\t0\t2\n")
    with pytest.raises(DataError, match=":3: system 'A' segment '0' appears twice"):
        read_score_tsv(tsv)
    with pytest.raises(DataError, match="no human score column 'human'"):
        read_score_tsv(tsv, human="human")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"system": "A", "seg_id": 0, "mqm": -1, "judge": 2.5, "text": "x"}\n'
                     '{"system": "B", "seg_id": 0, "mqm": null, "judge": 1}\n')
    table = read_score_jsonl(jsonl)
    assert list(table.metrics) == ["judge"] and np.isnan(table.human[1, 0])


# ---------------------------------------------------------------- published WMT22 zh-en numbers

PUBLISHED = [  # shared/data/README.md: Kendall tau-b (flat, 14 MT systems), acc_eq (MT + refB)
    ("BLEU-refA", 0.145, 41.6),
    ("chrF-refA", 0.147, 42.1),
    ("COMET-22-refA", 0.428, 53.6),
    ("BLEURT-20-refA", 0.361, 48.9),
    ("metricx_xxl_MQM_2020-refA", 0.427, 54.4),
]


@pytest.fixture(scope="module")
def wmt22_table() -> ScoreTable:
    return read_score_tsv(TSV)


@needs_tsv
@pytest.mark.shared_data
@pytest.mark.parametrize("metric, kendall, acc_eq", PUBLISHED)
def test_reproduces_published_wmt22_zhen(wmt22_table, metric, kendall, acc_eq):
    result = meta_evaluate(wmt22_table, metric)
    assert len(result.systems["seg_kendall"]) == 14 and "refB" not in result.systems["seg_kendall"]
    assert result.systems["acc_eq"][-1] == "refB" and len(result.systems["acc_eq"]) == 15
    assert f"{result.values['seg_kendall']:.3f}" == f"{kendall:.3f}"
    assert f"{100 * result.values['acc_eq']:.1f}" == f"{acc_eq:.1f}"


@needs_tsv
@pytest.mark.shared_data
def test_tie_calibration_is_fast(wmt22_table):
    start = time.perf_counter()
    for metric, _, _ in PUBLISHED:
        mt, usable = select_systems(wmt22_table, metric)
        tie_calibrated_accuracy(wmt22_table.human[usable], wmt22_table.metrics[metric][usable])
    # about 0.1 s each on a laptop core; generous for loaded CI machines
    assert time.perf_counter() - start < 20


# ---------------------------------------------------------------- fixes: bootstrap, near-constant Pearson


def test_bootstrap_skips_a_system_missing_from_a_resample():
    """C is rated on item 0 only; every resample without item 0 has no mean for C. The metric
    orders the systems exactly as the humans in every resample, so every interval bound is 1:
    before the fix, C's pairs counted as wrong there (accuracy 1/3) and widened the interval."""
    human = np.array([[0, -1, 0, -1, 0], [-2, -3, -2, -3, -2], [-9, NAN, NAN, NAN, NAN]], float)
    metric = np.array([[9, 8, 9, 8, 9], [5, 4, 5, 4, 5], [1, NAN, NAN, NAN, NAN]], float)
    table = ScoreTable(["A", "B", "C"], human, {"M": metric})
    res = meta_evaluate(table, "M", bootstrap=400, seed=1)
    assert res.values["sys_acc"] == 1.0 and res.ci["sys_acc"] == (1.0, 1.0)


def test_per_item_pearson_is_robust_for_nearly_constant_vectors():
    """A raw-moments formula loses every digit on 1e8 + tiny differences and called them NaN;
    the centred formula agrees with numpy, and an exactly constant column is still NaN."""
    rng = np.random.default_rng(0)
    human = 1e8 + rng.normal(size=(6, 4)) * 1e-3
    metric = 5e7 + rng.normal(size=(6, 4)) * 1e-4
    metric[:, 3] = 7.0  # constant: no correlation, dropped from the average
    want = np.mean([np.corrcoef(human[:, k], metric[:, k])[0, 1] for k in range(3)])
    assert pearson(human, metric, "item") == pytest.approx(want, abs=1e-9)
    want_sys = np.mean([np.corrcoef(human[r, :3], metric[r, :3])[0, 1] for r in range(6)])
    assert pearson(human[:, :3], metric[:, :3], "sys") == pytest.approx(want_sys, abs=1e-9)


def test_meta_evaluate_reports_soft_pairwise_accuracy():
    res = meta_evaluate(toy_table(), "M-refA")
    assert 0.0 <= res.values["sys_soft_acc"] <= 1.0 and "sys_soft_acc" in res.to_dict()


@needs_tsv
@pytest.mark.shared_data
def test_wmt22_soft_pairwise_accuracy_orders_metrics_like_accuracy(wmt22_table):
    spa = {m: meta_evaluate(wmt22_table, m).values["sys_soft_acc"] for m, _, _ in PUBLISHED}
    # the neural metrics agree with MQM's system comparisons far more than the lexical ones
    assert min(spa["COMET-22-refA"], spa["BLEURT-20-refA"], spa["metricx_xxl_MQM_2020-refA"]) > \
        max(spa["BLEU-refA"], spa["chrF-refA"]) + 0.1

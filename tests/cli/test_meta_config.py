"""``promptweave meta-eval configs/meta-eval.yaml``: the shipped example reproduces the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, cli

TSV = REPO.parent / "shared" / "data" / "metaeval" / "wmt22_zhen_seg_scores.tsv"


@pytest.mark.shared_data
def test_meta_eval_config_reproduces_published_table() -> None:
    if not TSV.exists():
        pytest.skip(f"shared data not found at {TSV}")
    res = cli("meta-eval", str(REPO / "configs" / "meta-eval.yaml"), "--json")
    assert res.returncode == 0, res.stderr
    got = {r["metric"]: r for r in json.loads(res.stdout)["results"]}
    expected = {"BLEU-refA": (0.145, 41.6), "chrF-refA": (0.147, 42.1), "COMET-22-refA": (0.428, 53.6),
                "BLEURT-20-refA": (0.361, 48.9), "metricx_xxl_MQM_2020-refA": (0.427, 54.4)}
    assert set(got) == set(expected)
    for name, (tau, acc) in expected.items():
        assert round(got[name]["seg_kendall"], 3) == tau, name
        assert round(100 * got[name]["acc_eq"], 1) == acc, name


def test_meta_eval_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("tsv: x.tsv\nbootstrp: 3\n")
    res = cli("meta-eval", str(bad))
    assert res.returncode == 2 and "m.yaml:2: 'bootstrp': unknown key (did you mean 'bootstrap'?)" in res.stderr


SCORES = "system\tseg_id\tmqm\tM-refA\tN-refA\n" + "".join(
    f"{s}\t{i}\t{h}\t{m}\t{n}\n" for s, hs, ms, ns in (
        ("A", [0, -1, -2, 0], [9, 8, 7, 9], [1, 2, 3, 1]),
        ("B", [-3, -4, -2, -5], [5, 4, 6, 3], [6, 5, 7, 6]),
        ("C", [-9, -8, -7, -9], [1, 2, 3, 1], [9, 8, 7, 9]))
    for i, (h, m, n) in enumerate(zip(hs, ms, ns)))


def one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.mark.parametrize("body, message", [
    ("bootstrap: lots", "m.yaml:2: 'bootstrap': expected a whole number in 0..100000"),
    ("bootstrap: -5", "m.yaml:2: 'bootstrap': -5 is outside 0..100000"),
    ("bootstrap: 100000000", "m.yaml:2: 'bootstrap': 100000000 is outside 0..100000"),
    ("confidence: 7", "m.yaml:2: 'confidence': 7 is outside [0.5, 0.999]"),
    ("confidence: .nan", "m.yaml:2: 'confidence': expected a number in [0.5, 0.999]"),
    ("recalibrate: maybe", "m.yaml:2: 'recalibrate': expected true or false"),
    ("refs: all", "m.yaml:2: 'refs': choose wmt, exclude, include"),
    ("significance: 1e9", "m.yaml:2: 'significance': expected a whole number"),
    ("rank_by: acc_eq", "m.yaml:2: 'rank_by': choose sys_acc"),
    ("metrics: {a: 1}", "m.yaml:2: 'metrics': expected a name or a list of names"),
])
def test_meta_eval_file_options_are_checked_like_flags(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "s.tsv").write_text(SCORES)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"tsv: s.tsv\n{body}\n")
    assert message in one_line(cli("meta-eval", str(cfg)))


@pytest.mark.parametrize("flags, message", [
    (["--bootstrap", "100000000"], "--bootstrap 100000000: 100000000 is outside 0..100000"),
    (["--bootstrap", "-5"], "--bootstrap -5: -5 is outside"),
    (["--confidence", "7"], "--confidence 7.0: 7 is outside [0.5, 0.999]"),
    (["--significance", "1000000"], "--significance 1000000: 1000000 is outside"),
])
def test_meta_eval_flags_are_bounded(tmp_path: Path, flags: list[str], message: str) -> None:
    (tmp_path / "s.tsv").write_text(SCORES)
    assert message in one_line(cli("meta-eval", "--tsv", str(tmp_path / "s.tsv"), *flags))


@pytest.mark.parametrize("cell", ["inf", "-Infinity"])
def test_infinite_scores_are_rejected(tmp_path: Path, cell: str) -> None:
    (tmp_path / "s.tsv").write_text(SCORES.replace("\t9\t1\n", f"\t{cell}\t1\n", 1))
    assert f"s.tsv:2: '{cell}' is infinite" in one_line(cli("meta-eval", "--tsv", str(tmp_path / "s.tsv")))
    rows = tmp_path / "s.jsonl"
    rows.write_text('{"system": "A", "seg_id": 0, "mqm": 1, "M": Infinity}\n{"system": "B", "seg_id": 0, "mqm": 2, "M": 1}\n')
    # the strict JSON reader refuses the non-standard number before any score is read
    assert "s.jsonl:1: Infinity is not a JSON number" in one_line(cli("meta-eval", "--jsonl", str(rows)))


def test_meta_eval_pools_language_pairs_and_ranks_metrics(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text(SCORES)
    (tmp_path / "b.tsv").write_text(SCORES.replace("\t-9\t", "\t-1\t"))  # C ties A on item 0
    cfg = tmp_path / "m.yaml"
    cfg.write_text("tsv: [xx-en=a.tsv, yy-en=b.tsv]\nsignificance: 50\nrank_by: sys_acc\n")
    res = cli("meta-eval", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["language_pairs"]) == {"xx-en", "yy-en"}
    pooled = out["pooled"]["M-refA"]
    # M orders A > B > C as the humans do in both language pairs: 3 + 3 pooled pairs, all right
    assert pooled["sys_pairs"] == 6 and pooled["sys_acc"] == 1.0 and pooled["language_pairs"] == 2
    assert out["pooled"]["N-refA"]["sys_acc"] == 0.0  # N orders them backwards
    ranking = out["language_pairs"]["xx-en"]["clusters"]["ranking"]
    assert [r["metric"] for r in ranking] == ["M-refA", "N-refA"]
    table = cli("meta-eval", str(cfg))
    assert table.returncode == 0 and "pooled over 2 language pairs" in table.stdout
    assert "significance clusters by sys_acc" in table.stdout

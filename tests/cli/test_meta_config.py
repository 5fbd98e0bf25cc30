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

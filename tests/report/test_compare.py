"""``eval --paired-bs/--paired-ar`` and ``compare`` give sacrebleu's own p-values (the sacrebleu CLI
is run here for the expected values) on the five WMT22 zh-en systems, with the same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.report.runs import need_wmt, wmt_run

# Online-W first: its differences to comet_bestmbr are not all significant, so p-values vary
ORDER = ["Online-W", "comet_bestmbr", "JDExploreAcademy", "Lan-Bridge", "M2M100_1.2B-B4"]
SACRE_NAMES = {"bleu": "BLEU", "chrf": "chrF2"}


def _texts(tmp: Path, order: list[str] = ORDER) -> tuple[Path, list[Path]]:
    rows = [json.loads(x) for x in need_wmt().read_text(encoding="utf-8").splitlines() if x.strip()]
    ref = tmp / "ref.txt"
    ref.write_text("".join(r["reference"].replace("\n", " ") + "\n" for r in rows), encoding="utf-8")
    hyps = []
    for name in order:
        p = tmp / f"{name}.txt"
        p.write_text("".join(next(t["hypothesis"] for t in r["translations"] if t["system"] == name)
                             .replace("\n", " ") + "\n" for r in rows), encoding="utf-8")
        hyps.append(p)
    return ref, hyps


# sacrebleu's own CLI, run with one shim: its ``-f json`` output holds numpy float32 values, which
# json cannot write under numpy 2 (sacrebleu 2.6 crashes there); they are written as floats.
_SACREBLEU_CLI = """
import json, sys
import numpy
_default = json.JSONEncoder.default
json.JSONEncoder.default = lambda self, o: float(o) if isinstance(o, numpy.floating) else _default(self, o)
from sacrebleu.sacrebleu import main
sys.argv[0] = "sacrebleu"
sys.exit(main())
"""


def _sacrebleu(ref: Path, hyps: list[Path], test: str, seed: str) -> list[dict]:
    res = subprocess.run([sys.executable, "-c", _SACREBLEU_CLI, str(ref), "-i", *map(str, hyps), "-m", "bleu",
                          "chrf", f"--paired-{test}", "-f", "json"], capture_output=True, text=True,
                         cwd=ref.parent, env={**os.environ, "SACREBLEU_SEED": seed}, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _check(ours: dict, expected: list[dict], test: str) -> None:
    by_metric = {m["metric"]: m["results"] for m in ours["metrics"]}
    for metric, sacre_name in SACRE_NAMES.items():
        got = by_metric[metric]
        assert len(got) == len(expected) == 5
        for g, e in zip(got, expected):
            want = e[sacre_name]
            assert g["score"] == pytest.approx(want["score"], abs=1e-9)
            if want["p_value"] is None:
                assert g["p_value"] is None
            else:
                assert g["p_value"] == pytest.approx(want["p_value"], abs=1e-12), (metric, g["system"])
            if test == "bs":
                assert g["mean"] == pytest.approx(want["mean"], abs=1e-9)
                assert g["ci"] == pytest.approx(want["ci"], abs=1e-9)
    p_values = {r["p_value"] for m in by_metric.values() for r in m if r["p_value"] is not None}
    assert len(p_values) > 1  # the comparison discriminates: not every p-value is the minimum


@pytest.mark.shared_data
@pytest.mark.parametrize("test,seed", [("bs", "12345"), ("bs", "7"), ("ar", "12345")])
def test_eval_paired_tests_match_sacrebleu(tmp_path: Path, test: str, seed: str) -> None:
    ref, hyps = _texts(tmp_path)
    expected = _sacrebleu(ref, hyps, test, seed)
    args = ["eval", "--ref", str(ref), *[a for h in hyps for a in ("--hyp", str(h))], "--metrics", "bleu,chrf",
            "--lp", "zh-en", f"--paired-{test}", "--json"]
    res = subprocess.run([sys.executable, "-m", "promptweave", *args], capture_output=True, text=True,
                         env={**os.environ, "SACREBLEU_SEED": seed}, timeout=600)
    assert res.returncode == 0, res.stderr
    _check(json.loads(res.stdout), expected, test)


@pytest.mark.shared_data
@pytest.mark.slow
def test_compare_runs_matches_sacrebleu_and_tests_judges(tmp_path: Path) -> None:
    run_dir = wmt_run(tmp_path, items=218)
    # the run's systems in their order of appearance, the baseline moved first
    order = ["Online-W", "JDExploreAcademy", "Lan-Bridge", "M2M100_1.2B-B4", "comet_bestmbr"]
    ref, hyps = _texts(tmp_path, order)
    expected = _sacrebleu(ref, hyps, "bs", "12345")
    html = tmp_path / "compare.html"
    res = cli("compare", str(run_dir), "--baseline", "Online-W", "--json", "--html", str(html))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    _check(out, expected, "bs")
    by_metric = {m["metric"]: m for m in out["metrics"]}
    # judge and human scores are tested too, on the items every system has a value for
    for name in ("mqm", "da", "mqm_score"):
        results = by_metric[name]["results"]
        assert [r["system"] for r in results] == order
        assert all(r["p_value"] is not None and 0 < r["p_value"] <= 1 for r in results[1:])
    assert by_metric["mqm"]["results"][0]["n"] < 218  # the judge's parse failures are left out, not scored 0
    page = html.read_text(encoding="utf-8")
    assert "default-src 'none'" in page and "Online-W" in page and 'id="compare-table"' in page
    table = cli("compare", str(run_dir), "--baseline", "Online-W", "--html", "")
    assert table.returncode == 0 and "Baseline: Online-W" in table.stdout and "(p = " in table.stdout


def test_compare_errors_are_one_line(tmp_path: Path) -> None:
    res = cli("compare", str(tmp_path))
    assert res.returncode == 2 and "no results.jsonl" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("report", str(tmp_path / "nope"))
    assert res.returncode == 2 and "not a directory" in res.stderr and "Traceback" not in res.stderr

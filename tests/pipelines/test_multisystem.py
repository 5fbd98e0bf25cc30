"""Evaluate several systems' outputs per source segment and export mt-metrics-eval files."""

from __future__ import annotations

import json
from pathlib import Path

from promptweave import run_pipeline
from promptweave.evaluators.mtme import read_score_file
from tests.helpers import write_jsonl


def test_systems_are_scored_ranked_and_exported(tmp_path: Path) -> None:
    segs = [("Das ist gut.", "This is good."), ("Es regnet.", "It is raining."), ("Ich bin müde.", "I am tired.")]
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": f"s{i}", "source": src, "reference": ref, "translations": [
            {"system": "good", "hypothesis": ref, "mqm_score": 0.0},
            {"system": "bad", "hypothesis": "Banana.", "mqm_score": -10.0},
        ]} for i, (src, ref) in enumerate(segs)])
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"""
name: sys-eval
model: {{backend: scripted, options: {{rules: [{{match: 'Banana', reply: '10'}}], default: '90'}}}}
data: {{path: {tmp_path / 'd.jsonl'}, key: id, explode: translations, src_lang: de, tgt_lang: en}}
steps:
  - id: da
    generate: {{template: {tmp_path / 'da.yaml'}, parser: number}}
metrics: [bleu, chrf]
scoring: {{hypothesis: hypothesis, group_by: system, human: mqm_score}}
output: {tmp_path / 'runs'}
""")
    (tmp_path / "da.yaml").write_text("messages:\n  - {role: user, content: 'Score 0-100: {{ hypothesis }}'}\n")
    summary = run_pipeline(cfg)
    scores = json.loads((summary.run_dir / "scores.json").read_text())
    assert abs(scores["systems"]["good"]["bleu"] - 100.0) < 1e-6 and scores["systems"]["bad"]["bleu"] < 10
    assert scores["systems"]["good"]["da"] == 90.0 and scores["systems"]["bad"]["da"] == 10.0
    assert scores["systems"]["bad"]["mqm_score"] == -10.0
    mtme = summary.run_dir / "mtme"
    seg = read_score_file(mtme / "de-en.da.seg.score")
    assert seg == {"good": [90.0, 90.0, 90.0], "bad": [10.0, 10.0, 10.0]}
    human = read_score_file(mtme / "de-en.mqm_score.seg.score")
    assert human["bad"] == [-10.0, -10.0, -10.0]
    assert abs(read_score_file(mtme / "de-en.bleu.sys.score")["good"][0] - 100.0) < 1e-6
    report = (summary.run_dir / "report.md").read_text()
    assert "| 1 | good |" in report and "| 2 | bad |" in report


def test_meta_eval_reads_a_run_directory(tmp_path: Path) -> None:
    from tests.helpers import cli

    test_systems_are_scored_ranked_and_exported(tmp_path)
    (run,) = list((tmp_path / "runs" / "sys-eval").iterdir())
    res = cli("meta-eval", "--run", str(run), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["human"] == "mqm_score"
    by_metric = {r["metric"]: r for r in out["results"]}
    assert set(by_metric) == {"bleu", "chrf", "da"}
    # the judge and BLEU both rank good above bad, as the human scores do
    assert by_metric["da"]["sys_acc"] == 1.0 and by_metric["bleu"]["sys_acc"] == 1.0
    bad = cli("meta-eval", "--run", str(tmp_path))
    assert bad.returncode == 2 and "no mtme/ score files" in bad.stderr

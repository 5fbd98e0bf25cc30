"""report.html / report.md from real scripted runs: hostile model text stays inert and capped,
usage adds up over resumes, latency and quality numbers are reported, `promptweave report` rebuilds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from promptweave import run_pipeline
from promptweave.report.markdown import md_text
from promptweave.report.numbers import fmt_score, merge_usage, percentile
from promptweave.report.page import json_for_script
from tests.helpers import cli, read_jsonl, scripted_pipeline

HOSTILE = "</script><script>alert(1)</script><!-- x --> | **bold** [link](http://e.invalid) \u2028\u2029 & <marquee>"


def _run(tmp: Path, reply: str, **kw: object) -> Path:
    return Path(run_pipeline(scripted_pipeline(tmp, reply=reply, **kw), progress=False).run_dir)  # type: ignore[arg-type]


def test_hostile_model_text_is_inert_in_html_and_markdown(tmp_path: Path) -> None:
    long_tail = "y" * 10_000
    run_dir = _run(tmp_path, HOSTILE + long_tail, rows=3)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    # exactly our two script elements; no comment opener, no raw line separators, no injected tag
    assert html.count("</script>") == 2 and html.count("<script") == 2
    assert "<!--" not in html and "\u2028" not in html and "\u2029" not in html and "<marquee>" not in html
    blob = re.search(r'<script type="application/json" id="pw-data">(.*?)</script>', html, re.S).group(1)
    data = json.loads(blob)
    hyp = data["rows"][0]["hyp"]
    assert hyp.startswith(HOSTILE.strip()[:40]) and "more characters]" in hyp and len(hyp) < 2100
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "](http" not in md and "\u2028" not in md
    sample = next(line for line in md.splitlines() if "**hyp**" in line)
    assert len(sample) < 900 and "more characters]" in sample and "\\|" in sample


def test_json_for_script_round_trips() -> None:
    value = {"t": "</script><!--\u2028\u2029&<>"}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "\u2028" not in text and json.loads(text) == value


def test_md_text() -> None:
    assert md_text("a|b\nc") == "a\\|b ⏎ c"
    assert md_text("x" * 10, cap=4) == "xxxx … [6 more characters]"


def test_usage_adds_up_over_resumes_and_latency_is_recorded(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path, rows=5, options=", delay: 0.01")
    first = run_pipeline(cfg, ["data.limit=3"], run_id="r", progress=False)
    second = run_pipeline(cfg, run_id="r", progress=False, overwrite=True)  # another limit: the same rows and more
    assert first.run_dir == second.run_dir
    manifest = json.loads((Path(second.run_dir) / "manifest.json").read_text())
    assert manifest["usage_last_run"]["default"]["calls"] == 2
    assert manifest["usage"]["default"]["calls"] == 5 and manifest["usage"]["default"]["requests"] == 5
    rows = read_jsonl(Path(second.run_dir) / "results.jsonl")
    lat = [r["outputs"]["hyp"]["call"]["latency_s"] for r in rows]
    assert len(lat) == 5 and all(0.009 <= x < 5 for x in lat)
    scores = json.loads((Path(second.run_dir) / "scores.json").read_text())
    assert scores["numbers"]["latency"]["default"]["calls"] == 5
    md = (Path(second.run_dir) / "report.md").read_text()
    assert "## Quality and latency" in md and "| default | 5 |" in md
    assert "| default | 5 | 5 |" in md  # usage: requests, calls over both runs


def test_flags_failed_rows_and_parse_failures_are_counted(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "这是中文。", rows=4)  # a Chinese "translation" into English
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "quality flags: wrong\\_language 4 (100% of rows)" in md
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "flag: wrong_language" in html and "4 (100%)" in html
    res = cli("report", str(run_dir))
    assert res.returncode == 0 and "report.html" in res.stdout


def test_numbers_helpers() -> None:
    assert fmt_score("comet", 0.05234) == "0.0523" and fmt_score("bleu", 33.0270) == "33.03"
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    total = merge_usage({"m": {"calls": 2, "cost": 0.5, "by_status": {"429": 1}}},
                        {"m": {"calls": 3, "cost": 0.25, "by_status": {"429": 2}}, "n": {"calls": 1}})
    assert total["m"]["calls"] == 5 and total["m"]["cost"] == 0.75 and total["m"]["by_status"] == {"429": 3}
    assert total["n"]["calls"] == 1

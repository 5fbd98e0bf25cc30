"""The streaming finish (one pass, statistics in a process pool, summed) against the in-memory
reference (:mod:`promptweave.pipelines.inmemory`): same scores, same files, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from promptweave import load_config, run_pipeline
from promptweave.pipelines import finish, inmemory, scoring
from promptweave.pipelines.rundir import write_json_atomic
from promptweave.pipelines.store import RunStore
from promptweave.report.markdown import run_numbers
from tests.helpers import REPO, read_jsonl, write_jsonl

WMT = REPO.parent / "shared" / "data" / "wmt22"


def wmt_rows(lp: str, n: int) -> list[dict]:
    rows = read_jsonl(WMT / f"jdexplore_wmt22.{lp}.jsonl")[:n]
    if len(rows) < n:
        pytest.skip(f"WMT22 {lp} data not available")
    return rows


def multisystem_config(tmp: Path, n: int, fail_first: int = 7) -> Path:
    """n WMT22 de-en segments x 3 systems (the submitted output, the reference, a degraded copy),
    a DA judge with parse failures, the first calls failing (error rows), grouped by system."""
    rows = []
    for i, r in enumerate(wmt_rows("de-en", n)):
        words = r["hypothesis"].split()
        rows.append({"id": f"s{i}", "source": r["source"], "reference": r["reference"], "translations": [
            {"system": "jdexplore", "hypothesis": r["hypothesis"], "mqm": -(i % 5)},
            {"system": "ref-copy", "hypothesis": r["reference"], "mqm": 0},
            {"system": "degraded", "hypothesis": " ".join(words[: max(1, len(words) // 2)]), "mqm": -(i % 7) - 1},
        ]})
    write_jsonl(tmp / "d.jsonl", rows)
    (tmp / "da.yaml").write_text("messages:\n  - {role: user, content: 'Score 0-100: {{ hypothesis }}'}\n")
    cfg = tmp / "eval.yaml"
    cfg.write_text(f"""
name: stream-eval
model: {{backend: scripted, max_retries: 0, backoff_base: 0.01, options: {{fail_first: {fail_first},
  rules: [{{match: '\\?', reply: 'no idea'}}, {{match: '(\\d)', reply: '7\\1'}}], default: '55'}}}}
data: {{path: {tmp / 'd.jsonl'}, key: id, explode: translations, src_lang: de, tgt_lang: en}}
steps:
  - id: da
    generate: {{template: {tmp / 'da.yaml'}, parser: number}}
metrics: [bleu, chrf, ter]
scoring: {{hypothesis: hypothesis, group_by: system, human: mqm}}
cache: 'off'
output: {tmp / 'runs'}
""")
    return cfg


def reference_files(cfg: Path, run_dir: Path, out: Path) -> dict[str, bytes]:
    """scores.json, report.md and the mt-metrics-eval files as the in-memory computation writes them."""
    loaded = load_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    store = RunStore(run_dir)
    store.open()
    try:
        records = store.ordered()
    finally:
        store.close()
    scores = inmemory.compute_scores(loaded, records)
    scores["systems"] = inmemory.system_table(loaded, records, scores)
    scores["mtme_files"] = [p.replace(str(out), str(run_dir / "mtme")) for p in
                            inmemory.export_mtme(loaded, records, scores, out)]
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    g = loaded.pipeline.scoring.group_by
    scores["numbers"] = run_numbers(records, manifest, lambda r: scoring.value_of(r, g) if g else loaded.pipeline.name)
    write_json_atomic(out / "scores.json", scores)
    report = finish.render_report(loaded, scores, manifest, finish.ReportExamples.from_records(records, scores["hypothesis"]))
    files = {"scores.json": (out / "scores.json").read_bytes(), "report.md": report.encode("utf-8")}
    for p in sorted(out.glob("*.score")):
        files["mtme/" + p.name] = p.read_bytes()
    return files


def run_files(run_dir: Path) -> dict[str, bytes]:
    files = {"scores.json": (run_dir / "scores.json").read_bytes(), "report.md": (run_dir / "report.md").read_bytes()}
    for p in sorted((run_dir / "mtme").glob("*.score")):
        files["mtme/" + p.name] = p.read_bytes()
    return files


def test_streaming_finish_matches_the_in_memory_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # statistics in a process pool, in odd-sized chunks, even for this small run
    monkeypatch.setattr(finish, "POOL_ROWS", 100)
    monkeypatch.setattr(scoring, "POOL_ROWS", 100)  # the live tally's pool too
    monkeypatch.setattr(scoring, "CHUNK", 97)
    cfg = multisystem_config(tmp_path, 700)
    first = run_pipeline(cfg, run_id="r")
    assert first.errors == 7  # the first calls failed: their rows are errors, their segments dropped
    # an interrupted run: drop the last rows, then resume and retry the errors
    results = first.run_dir / "results.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-300]))
    second = run_pipeline(cfg, run_id="r", retry_errors=True)
    assert second.ran == 300 + 7 and second.ledger.calls == 307
    scores = json.loads((second.run_dir / "scores.json").read_text())
    assert scores["comparison"]["common_segments"] < scores["comparison"]["segments"]
    assert scores["judges"]["da"]["parse_failures"] > 0 and scores["rows_error"] == 7
    assert run_files(second.run_dir) == reference_files(cfg, second.run_dir, tmp_path / "ref")
    # and the HTML report written from the in-memory scores equals one rendered from the files
    from promptweave.report import write_report

    html = (second.run_dir / "report.html").read_bytes()
    write_report(second.run_dir)
    assert (second.run_dir / "report.html").read_bytes() == html


def test_streaming_scores_single_system_and_without_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finish, "POOL_ROWS", 10**9)
    monkeypatch.setattr(scoring, "POOL_ROWS", 10**9)
    rows = wmt_rows("de-en", 400)
    write_jsonl(tmp_path / "d.jsonl", [{"source": r["source"], "reference": r["reference"], "hypothesis": r["hypothesis"]}
                                       for r in rows])
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"""
name: single
model: {{backend: scripted, options: {{default: '{{echo}}'}}}}
data: {{path: {tmp_path / 'd.jsonl'}, src_lang: de, tgt_lang: en}}
steps:
  - id: hyp
    translate: {{prompt: tsp}}
metrics: [bleu, chrf]
scoring: {{hypothesis: hypothesis}}
cache: 'off'
output: {tmp_path / 'runs'}
""")
    summary = run_pipeline(cfg)
    files = run_files(summary.run_dir)
    assert files == reference_files(cfg, summary.run_dir, tmp_path / "ref")
    # the corpus score is sacrebleu's own on the WMT22 file
    import sacrebleu

    expected = sacrebleu.corpus_bleu([r["hypothesis"] for r in rows], [[r["reference"] for r in rows]])
    assert json.loads(files["scores.json"])["metrics"]["bleu"]["corpus"] == expected.score


@pytest.mark.parametrize("lp", ["de-en", "en-zh", "en-ja"])
def test_pooled_eval_scores_equal_sacrebleu_on_wmt22(lp: str) -> None:
    from promptweave.evaluators import create_metric
    from promptweave.evaluators.segstats import make_pool, metric_spec, score_chunked

    rows = wmt_rows(lp, 1500)
    hyps, refs = [r["hypothesis"] for r in rows], [r["reference"] for r in rows]
    src, tgt = lp.split("-")
    pool = make_pool(2)
    try:
        for name in ("bleu", "chrf", "ter"):
            whole = create_metric(name, src, tgt).score(hyps, refs)
            metric = create_metric(name, src, tgt)
            chunked = score_chunked(metric, metric_spec(name, src, tgt, {}), hyps, refs, pool, chunk=333)
            assert (chunked.corpus, chunked.signature, chunked.segments) == (whole.corpus, whole.signature, whole.segments)
            assert chunked.extra == whole.extra
    finally:
        if pool is not None:
            pool.shutdown()


KILLER = """
import os, signal, sys
from promptweave.pipelines import finish
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
finish.render_report = die
from promptweave import run_pipeline
run_pipeline(sys.argv[1], run_id="r")
"""


def test_kill_during_finish_loses_nothing_and_a_rerun_finishes(tmp_path: Path) -> None:
    cfg = multisystem_config(tmp_path, 60, fail_first=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", KILLER, str(cfg)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    run_dir = tmp_path / "runs" / "stream-eval" / "r"
    assert len(read_jsonl(run_dir / "results.jsonl")) == 180 and not (run_dir / "report.md").exists()
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and again.ledger.calls == 0
    assert (run_dir / "report.md").is_file() and (run_dir / "report.html").is_file()
    assert run_files(run_dir) == reference_files(cfg, run_dir, tmp_path / "ref")


def test_eval_cli_in_a_process_pool_prints_the_same_scores(tmp_path: Path) -> None:
    from tests.helpers import cli

    rows = wmt_rows("en-zh", 1200)
    (tmp_path / "h.txt").write_text("".join(r["hypothesis"].replace("\n", " ") + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "r.txt").write_text("".join(r["reference"].replace("\n", " ") + "\n" for r in rows), encoding="utf-8")
    args = ("eval", "--hyp", str(tmp_path / "h.txt"), "--ref", str(tmp_path / "r.txt"), "--lp", "en-zh",
            "--metrics", "bleu,chrf,ter", "--json", "--segments")
    outs = []
    for threshold in ("100", "1000000000"):  # pooled, then in one process
        res = cli(*args, env={**os.environ, "PYTHONPATH": str(REPO), "PROMPTWEAVE_POOL_SEGMENTS": threshold})
        assert res.returncode == 0, res.stderr
        outs.append(json.loads(res.stdout))
    assert outs[0] == outs[1] and outs[0]["results"][0]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:zh")


def test_resuming_a_finished_run_reuses_its_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = multisystem_config(tmp_path, 80, fail_first=3)
    first = run_pipeline(cfg, run_id="r")
    d = first.run_dir
    before = run_files(d)

    def no_second_pass(*a: object, **k: object) -> None:
        raise AssertionError("a finished run was scored again")

    with monkeypatch.context() as m:
        m.setattr(finish, "tally_run", no_second_pass)
        again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and again.ledger.calls == 0
    assert again.scores["metrics"] == first.scores["metrics"] and again.scores["judges"] == first.scores["judges"]
    assert run_files(d)["scores.json"] == before["scores.json"]
    fast = {n: (d / n).read_text(encoding="utf-8") for n in ("report.md", "report.html")}
    # the same files as a full second pass writes (the state file gone)
    (d / finish.finishcache.STATE_FILE).unlink()
    run_pipeline(cfg, run_id="r")
    full = {n: (d / n).read_text(encoding="utf-8") for n in ("report.md", "report.html")}

    def steady(text: str) -> str:  # the finish time and last-run seconds differ between runs
        import re

        text = re.sub(r"finished [0-9T:+\-]+", "finished T", text)
        return re.sub(r"last run: .*", "last run", text)

    assert steady(fast["report.md"]) == steady(full["report.md"])
    assert steady(fast["report.html"]) == steady(full["report.html"])
    assert run_files(d) == reference_files(cfg, d, tmp_path / "ref")
    # a changed input is scored again
    (tmp_path / "eval.yaml").write_text((tmp_path / "eval.yaml").read_text().replace("[bleu, chrf, ter]", "[bleu, chrf]"))
    changed = run_pipeline(cfg, run_id="r", overwrite=True)
    assert set(changed.scores["metrics"]) == {"bleu", "chrf"}

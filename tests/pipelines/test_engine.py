from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptweave import run_pipeline
from tests.helpers import read_jsonl, scripted_pipeline


def run_dir(cfg: Path) -> Path:
    (d,) = list((cfg.parent / "runs" / "scripted").iterdir())
    return d


def test_run_writes_results_scores_manifest_report(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path, reply="Here is the translation: \"{echo}\"", extra="metrics: [bleu, chrf]\n")
    summary = run_pipeline(cfg)
    d = run_dir(cfg)
    rows = read_jsonl(d / "results.jsonl")
    assert [r["key"] for r in rows] == ["0", "1", "2", "3", "4"]
    first = rows[0]["outputs"]["hyp"]
    assert first["raw"].startswith("Here is the translation:")
    assert "preamble" in first["removed"] and "quotes" in first["removed"]
    assert first["value"].endswith("Satz Nummer 0.")  # echo of the rendered user turn, cleaned
    scores = json.loads((d / "scores.json").read_text())
    assert set(scores["metrics"]) == {"bleu", "chrf"}
    assert scores["metrics"]["bleu"]["signature"].startswith("nrefs:1")
    assert set(scores["segments"]["0"]) == {"bleu", "chrf"}
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["steps"]["hyp"]["template"] == "tsp" and len(manifest["steps"]["hyp"]["template_sha256"]) == 64
    assert manifest["config"]["name"] == "scripted" and "sacrebleu" in manifest["versions"]
    assert manifest["usage"]["default"]["calls"] == 5
    assert "| bleu |" in (d / "report.md").read_text()
    assert summary.ledger.calls == 5


def test_second_run_makes_zero_model_calls(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path)
    first = run_pipeline(cfg)
    assert first.ledger.calls == 5 and first.ran == 5
    second = run_pipeline(cfg)
    assert second.ran == 0 and second.skipped == 5 and second.ledger.calls == 0
    # a fresh run directory still makes no calls: every request hits the cache
    third = run_pipeline(cfg, run_id="fresh")
    assert third.ran == 5 and third.ledger.calls == 0 and third.ledger.cache_hits == 5


def test_resume_after_torn_write(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path, rows=6)
    run_pipeline(cfg)
    results = run_dir(cfg) / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    # simulate a kill: two rows finished, the third half-written
    results.write_text("".join(lines[:2]) + lines[2][:17])
    summary = run_pipeline(cfg)
    assert summary.ran == 4 and summary.skipped == 2
    rows = read_jsonl(results)
    assert [r["key"] for r in rows] == [str(i) for i in range(6)]


def test_failed_rows_are_errors_not_scores_and_retry_errors_reruns_them(tmp_path: Path) -> None:
    # the first 9 calls fail; 3 attempts per request (max_retries 2) -> rows 0..2 exhaust retries
    cfg = scripted_pipeline(tmp_path, rows=5, options=", fail_first: 9",
                            extra="metrics: [bleu]\nconcurrency: 1\n")
    summary = run_pipeline(cfg, run_id="r")
    assert summary.errors == 3
    rows = read_jsonl(run_dir(cfg) / "results.jsonl")
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 3
    assert failed[0]["error"]["step"] == "hyp" and "after 3 attempts" in failed[0]["error"]["message"]
    assert failed[0]["outputs"]["hyp"]["value"] is None
    scores = json.loads((run_dir(cfg) / "scores.json").read_text())
    assert scores["rows_error"] == 3 and len(scores["segments"]) == 2  # failed rows are not scored
    assert "--retry-errors" in (run_dir(cfg) / "report.md").read_text()
    # plain resume keeps the errors; --retry-errors re-runs exactly those rows
    assert run_pipeline(cfg, run_id="r").ran == 0
    # a new scripted model fails its first 9 calls again; 9 retries (an operational setting, so
    # still the same run) outlast them
    retried = run_pipeline(cfg, ["model.max_retries=9"], run_id="r", retry_errors=True)
    assert retried.ran == 3 and retried.errors == 0
    rows = read_jsonl(run_dir(cfg) / "results.jsonl")
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)


def test_steps_chain_and_named_models(tmp_path: Path) -> None:
    tpl = tmp_path / "review.yaml"
    tpl.write_text("messages:\n  - role: user\n    content: 'REVIEW {{ hyp }} vs {{ reference }}'\n")
    cfg = scripted_pipeline(tmp_path, rows=2, extra=(
        "models:\n  judge: {backend: scripted, model: judge, options: {default: 'score 42'}}\n"))
    text = cfg.read_text().replace(
        "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n",
        f"steps:\n  - id: hyp\n    translate: {{prompt: baseline}}\n"
        f"  - id: review\n    model: judge\n    generate: {{template: {tpl}, parser: number}}\n")
    cfg.write_text(text)
    run_pipeline(cfg)
    rows = read_jsonl(run_dir(cfg) / "results.jsonl")
    assert rows[0]["outputs"]["review"]["value"] == 42.0
    assert rows[0]["outputs"]["review"]["parse_status"] == "ok"


@pytest.mark.parametrize("prompt, needs", [("icl", "examples"), ("cot-one", "examples")])
def test_prompts_that_need_examples_say_so(tmp_path: Path, prompt: str, needs: str) -> None:
    from promptweave.errors import ConfigError

    cfg = scripted_pipeline(tmp_path)
    cfg.write_text(cfg.read_text().replace("prompt: tsp", f"prompt: {prompt}"))
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg)
    assert "pipe.yaml:6" in str(info.value) and needs in str(info.value)


def test_icl_examples_never_include_the_test_item(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path, rows=4)
    dev = tmp_path / "data.jsonl"  # the test file doubles as the dev file
    cfg.write_text(cfg.read_text().replace(
        "translate: {prompt: tsp}",
        f"translate: {{prompt: icl, examples: {{path: {dev}, k: 3, select: random, seed: 7}}}}"))
    run_pipeline(cfg)
    rows = read_jsonl(run_dir(cfg) / "results.jsonl")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["fields"]["source"] in r["outputs"]["hyp"]["value"]  # echo of the last user turn


def test_a_model_that_never_awaits_still_shares_the_loop(tmp_path: Path) -> None:
    """The scripted backend answers without awaiting anything. Each row must still give the event
    loop a turn: else one worker runs every row in one step and every call's cancelled timeout
    timer stays in the loop's heap until the run ends (memory that grew with the run)."""
    import asyncio

    from promptweave import load_config
    from promptweave.pipelines.engine import Engine, run_dir_for

    cfg = scripted_pipeline(tmp_path, rows=2000, extra="concurrency: 8\ncache: 'off'\n")
    loaded = load_config(cfg)
    engine = Engine(loaded, run_dir_for(loaded), progress=False)
    heap: list[int] = []
    workers: set[object] = set()
    append = engine.store.append

    def watched(record: dict) -> None:
        append(record)
        heap.append(len(asyncio.get_running_loop()._scheduled))  # the timers asyncio holds (private)
        workers.add(asyncio.current_task())

    engine.store.append = watched  # type: ignore[method-assign]
    try:
        summary = asyncio.run(engine.run())
    finally:
        engine.close()
    assert summary.ran == 2000 and len(heap) == 2000
    assert max(heap) < 200, max(heap)  # bounded by the rows in flight, not by the rows run
    assert len(workers) == 8  # every worker took rows

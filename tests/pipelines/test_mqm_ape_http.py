"""MQM-APE's per-error calls for one segment run concurrently over real HTTP: a local
OpenAI-compatible server answers every call after a fixed delay, so the wall time of one segment
tells whether its post-edit and verifier calls overlapped."""

from __future__ import annotations

import json
import time
from pathlib import Path

from promptweave import run_pipeline
from promptweave.testing import request_log, serve
from tests.helpers import write_jsonl
from tests.pipelines.test_judge_steps import APE_RULES, HYP, REF, SOURCE

DELAY = 0.5


def test_per_error_calls_overlap_against_a_delayed_server(tmp_path: Path) -> None:
    rules = json.dumps([[r["match"], r["reply"]] for r in APE_RULES])
    write_jsonl(tmp_path / "d.jsonl", [{"source": SOURCE, "translation": HYP, "reference": REF}])
    with serve(delay=DELAY, rules=rules) as base_url:
        cfg = tmp_path / "ape.yaml"
        cfg.write_text(f"""
name: ape-http
model: {{backend: openai, base_url: '{base_url}', model: test, max_concurrency: 16, cache: false}}
data: {{path: {tmp_path / 'd.jsonl'}, src_lang: en, tgt_lang: de}}
steps:
  - id: ape
    mqm: {{method: mqm_ape, translation: translation}}
output: {tmp_path / 'runs'}
""")
        start = time.perf_counter()
        summary = run_pipeline(cfg)
        elapsed = time.perf_counter() - start
        log = request_log(base_url)
    out = json.loads((summary.run_dir / "results.jsonl").read_text())["outputs"]["ape"]
    # 1 evaluator call, then 3 post-edits, then 6 verifier calls: 10 calls of 0.5 s each
    assert summary.ledger.calls == 10
    assert out["value"] == -5.5 and [e["keep"] for e in out["errors"]] == [1.0, 0.0, 0.5]
    # the server's clock: each round's calls arrive together, one round after the other
    arrivals = {key: entries[0][0] for key, entries in log["log"].items()}
    rounds = {"post-edit": [], "verify": []}
    for key, text in log["texts"].items():
        if "post-edit the translation" in text:
            rounds["post-edit"].append(arrivals[key])
        elif "translation A:" in text:
            rounds["verify"].append(arrivals[key])
    assert len(rounds["post-edit"]) == 3 and len(rounds["verify"]) == 6
    for name, times in rounds.items():
        assert max(times) - min(times) < DELAY / 2, f"{name} calls did not overlap: {times}"
    assert min(rounds["verify"]) - max(rounds["post-edit"]) >= DELAY * 0.9  # verify waits for the post-edits
    # and the whole segment took about three rounds, not ten calls in a row
    assert elapsed < 10 * DELAY, f"{elapsed:.2f}s for 10 calls of {DELAY}s"

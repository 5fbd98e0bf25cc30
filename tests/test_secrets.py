"""API keys reach the server and nothing else: no file a run writes, no log line, no output."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from promptweave.testing import request_log, serve
from tests.helpers import REPO, write_jsonl

# every library logger at DEBUG, to stderr, then the real CLI
_DEBUG_CLI = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr);"
              "sys.argv[0] = 'promptweave'; from promptweave.cli import main; main()")


@pytest.fixture
def keys() -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-pwmarker-" + secrets.token_hex(12),
            "PW_SECRET_TEST_KEY": "pwmarker2-" + secrets.token_hex(12)}


def _pipeline(tmp: Path, base_url: str) -> Path:
    write_jsonl(tmp / "data.jsonl", [{"source": f"Satz {i}.", "reference": f"Sentence {i}."} for i in range(6)])
    (tmp / "review.yaml").write_text("messages:\n  - {role: user, content: 'Score {{ hyp }}'}\n", encoding="utf-8")
    cfg = tmp / "secret.yaml"
    cfg.write_text(
        "name: secrets\n"
        f"model: {{backend: openai, model: m, base_url: '{base_url}', api_key_env: OPENAI_API_KEY, max_retries: 1,"
        " backoff_base: 0.01}\n"
        f"models:\n  judge: {{backend: openai, model: j, base_url: '{base_url}', api_key_env: PW_SECRET_TEST_KEY,"
        " max_retries: 1, backoff_base: 0.01}\n"
        "data: {path: data.jsonl, src_lang: de, tgt_lang: en}\n"
        "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"
        "  - id: review\n    model: judge\n    generate: {template: review.yaml, parser: number}\n"
        "metrics: [bleu]\n"
        f"output: {tmp / 'runs'}\n",
        encoding="utf-8",
    )
    return cfg


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, timeout=120)


def test_keys_appear_in_no_file_log_or_output(tmp_path: Path, keys: dict[str, str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if k not in keys}, **keys, "OPENAI_LOG": "debug",
           "PYTHONPATH": str(REPO)}
    # one row answers 401, one 429 then fine: error paths write reasons into results and logs
    with serve(fail_match="Satz 3", fail_status=401, seed=3, p429=0.2, retry_after=0.01) as url:
        cfg = _pipeline(tmp_path, url)
        runs = [
            _run(["-m", "promptweave", "run", str(cfg), "--no-progress", "--json"], env, tmp_path),
            _run(["-m", "promptweave", "run", str(cfg), "--no-progress", "--run-id", "second"], env, tmp_path),
            _run(["-c", _DEBUG_CLI, "run", str(cfg), "--no-progress", "--run-id", "debug"], env, tmp_path),
            _run(["-c", _DEBUG_CLI, "validate", str(cfg)], env, tmp_path),
        ]
        seen = set(request_log(url)["auth"])

    # the test means something: both keys were sent, the debug run logged, the 401 row failed
    for key in keys.values():
        assert hashlib.sha256(f"Bearer {key}".encode()).hexdigest() in seen
    assert runs[2].returncode == 1 and b"DEBUG" in runs[2].stderr
    assert b"HTTP 401" in (tmp_path / "runs" / "secrets" / "debug" / "results.jsonl").read_bytes()

    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name.startswith("cache.sqlite") for p in written) and len(written) >= 12
    for key in keys.values():
        marker = key.encode()
        for res in runs:
            assert marker not in res.stdout and marker not in res.stderr
        for path in written:
            assert marker not in path.read_bytes(), f"{key} leaked into {path}"

"""API keys reach the server and nothing else: no file a run writes, no log line, no output."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptweave.models import Message
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
    # one row answers 401, some 500 or 429 then fine: error paths write reasons into results and
    # logs, and the server quotes the key in every error body (whole, and its middle again)
    with serve(fail_match="Satz 3", fail_status=401, seed=3, p429=0.2, p500=0.2, retry_after=0.01,
               echo_key=True) as url:
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
    debug_rows = (tmp_path / "runs" / "secrets" / "debug" / "results.jsonl").read_text(encoding="utf-8")
    assert "HTTP 401" in debug_rows and "incorrect API key provided: *** (key sk-...***...)" in debug_rows

    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name.startswith("cache.sqlite") for p in written) and len(written) >= 12
    outputs = [res.stdout for res in runs] + [res.stderr for res in runs]
    contents = {path: path.read_bytes() for path in written}
    for key in keys.values():
        # the key, and every run of 12 characters from it
        pieces = {key[i:i + 12].encode() for i in range(len(key) - 11)}
        for piece in pieces:
            assert not any(piece in out for out in outputs), f"{key} leaked into stdout/stderr"
            for path, data in contents.items():
                assert piece not in data, f"{key} leaked into {path}"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    from promptweave import secrets as registry

    registry._reset_for_tests()
    monkeypatch.setattr(registry, "_env_scanned", True)  # only what a test registers
    yield registry
    registry._reset_for_tests()


KEY = "sk-proj-Q7fz2LwP9xKc4TbN8vRm1HsJ5dYe3GaU"


@pytest.mark.parametrize("text, expected", [
    (f"Incorrect API key provided: {KEY}.", "Incorrect API key provided: ***."),
    (f"key {KEY[:12]}...{KEY[-4:]}", "key ***..." + KEY[-4:]),  # the last 4 chars alone say nothing
    (f"middle {KEY[10:30]} end", "middle *** end"),
    (f"{KEY}{KEY}", "******"),
    (f"Bearer {KEY}\n", "Bearer ***\n"),
    (f"twelve {KEY[20:32]}.", "twelve ***."),  # MIN_PIECE characters are a run
    (f"eleven {KEY[20:31]}.", f"eleven {KEY[20:31]}."),  # one fewer: too short to tell from text
    ("prefix only: sk-proj-", "prefix only: sk-proj-"),
    ("", ""),
])
def test_scrub_replaces_keys_and_long_runs_of_them(registry: Any, text: str, expected: str) -> None:
    registry.register(KEY)
    assert registry.scrub(text) == expected


def test_scrub_keeps_json_valid_and_ignores_short_values(registry: Any) -> None:
    odd = 'pa"ss\\word-with-quote-0123456789'
    registry.register(odd)
    registry.register("EMPTY")
    registry.register("abc")
    registry.register(None)
    registry.register(12345678)
    record = {"error": f"echo {odd} and {odd[5:]}", "text": "EMPTY abc"}
    line = registry.scrub(json.dumps(record))
    back = json.loads(line)
    assert "word-with-quote" not in line and back["text"] == "EMPTY abc"
    assert registry.registered() == 1


def test_env_scan_registers_secret_named_variables(registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "zz-" + "9" * 20)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "a1" * 10)
    monkeypatch.setenv("MAX_TOKENS_NOTE", "not-a-secret-value")
    registry.register_env()
    text = registry.scrub("zz-99999999999999999999 hf_a1a1a1a1a1a1a1a1a1a1 not-a-secret-value")
    assert text == "*** *** not-a-secret-value"


def test_log_records_are_scrubbed_at_every_logger(registry: Any) -> None:
    registry.register(KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        for name in ("promptweave.runtime", "httpx", "openai._base_client", "someone.else"):
            logging.getLogger(name).debug("headers %s", {"authorization": f"Bearer {KEY}"})
        try:
            raise ValueError(f"server said {KEY}")
        except ValueError:
            logging.getLogger("promptweave.engine").exception("row failed with %s", KEY[5:25])
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    out = stream.getvalue()
    assert out.count("Bearer ***") == 4 and "server said ***" in out and "row failed with ***" in out
    assert KEY[8:20] not in out


def test_model_errors_are_scrubbed_at_the_runtime(registry: Any) -> None:
    import asyncio

    from promptweave.models import BackendError, BaseChatModel, ModelConfig
    from promptweave.models.runtime import ModelRuntime

    class Echo(BaseChatModel):
        identity = {"backend": "echo", "model": "e"}

        async def complete(self, messages: Any, params: Any) -> Any:
            raise BackendError(f"HTTP 401: bad key {KEY}", status=401)

    registry.register(KEY)
    rt = ModelRuntime(ModelConfig(backend="scripted", max_retries=0), Echo())
    res = asyncio.run(rt.chat([Message("user", "hi")]))
    assert res.error == "HTTP 401: bad key ***"


def test_base_url_credentials_stay_out_of_identity(registry: Any) -> None:
    from promptweave.models.openai_api import public_url

    url = public_url("https://bob:pw-0123456789abcdef@llm.example/v1?api-key=qk-0123456789abcdefgh&region=eu")
    assert url == "https://llm.example/v1?api-key=***&region=eu"
    assert registry.scrub("pw-0123456789abcdef qk-0123456789abcdefgh") == "*** ***"


def test_cli_error_lines_are_scrubbed(tmp_path: Path) -> None:
    """A key pasted into a config value comes back in the error line as ``***``."""
    key = "sk-pwmarker-" + secrets.token_hex(12)
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: p\nmodel: {backend: scripted, seed: '" + key + "'}\n"
                   "data: {path: d.jsonl}\nsteps:\n  - id: hyp\n    translate: {prompt: tsp}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MY_SERVICE_API_KEY": key}
    res = _run(["-m", "promptweave", "validate", str(cfg)], env, tmp_path)
    assert res.returncode == 2 and b"'model.seed'" in res.stderr, res.stderr
    assert key[:12].encode() not in res.stderr and b"***" in res.stderr

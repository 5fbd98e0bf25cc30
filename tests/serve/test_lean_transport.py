"""``promptweave serve`` calls an openai backend through the lean transport (no SDK machinery per
request) unless the serve file names a transport, and its users see the same backend errors the
SDK's transport gives (tests/models/test_openai_lean.py compares the two fault by fault)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import yaml

from promptweave.models.base import BackendError, GenParams, Message
from promptweave.models.openai_api import OpenAIChatModel
from promptweave.testing import request_log
from promptweave.testing import serve as start_backend

from .server import serve

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")


def test_lean_is_chosen_for_openai_unless_the_file_names_another_transport() -> None:
    # serve's model configs keep their options: the backend's default transport, auto, is lean
    for transport, lean in [(None, True), ("auto", True), ("lean", True), ("httpx", False), ("aiohttp", False)]:
        model = OpenAIChatModel("m", "http://127.0.0.1:9/v1", "k", **({"transport": transport} if transport else {}))
        assert (model.lean is not None) == lean, transport
        asyncio.run(model.aclose())


def _sdk_error(url: str, text: str) -> str:
    async def call() -> str:
        model = OpenAIChatModel("m", url, "sk-serve", transport="aiohttp")
        try:
            await model.complete([Message("user", text)], GenParams())
        except BackendError as exc:
            return str(exc)
        finally:
            await model.aclose()
        raise AssertionError("the canned 429 was answered")
    return asyncio.run(call())


def test_backend_errors_read_as_the_sdk_words_them(tmp_path: Path) -> None:
    # unanchored: the backend sees the memory prompt, whose last user turn holds the message among others
    canned = [{"match": "busy", "status": 429, "type": "application/json", "headers": {"retry-after": "0"},
               "body": json.dumps({"error": {"message": "Rate limit reached for m", "type": "requests"}})}]
    with start_backend(reply="fine", canned=json.dumps(canned)) as url:
        model = {"backend": "openai", "model": "m", "base_url": url, "cache": False, "max_retries": 0,
                 "api_key_env": "PW_TEST_SERVE_KEY"}
        cfg = tmp_path / "serve.yaml"
        cfg.write_text(yaml.safe_dump({"model": model, "store": f"sqlite:///{tmp_path / 'memory.db'}",
                                       "server": {"keys_env": None, "port": 0}}))
        with serve(cfg, env={"PW_TEST_SERVE_KEY": "sk-serve"}) as s:
            def say(text: str) -> httpx.Response:
                return httpx.post(f"{s.root}/v1/chat/completions", timeout=30,
                                  json={"user": "ada", "messages": [{"role": "user", "content": text}]})

            ok = say("hello")
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "fine"
            busy = say("busy")
        expected = _sdk_error(url, "busy")
        assert expected.startswith("HTTP 429: ")
        assert busy.status_code == 502 and expected in busy.json()["error"]["message"], busy.text
        assert len(request_log(url)["auth"]) == 1  # serve and the SDK sent the same key the same way
    assert "Traceback" not in s.log()

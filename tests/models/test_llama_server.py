"""The ``openai`` backend against a real OpenAI-compatible server: llama.cpp's, on the embedded model."""

from __future__ import annotations

import asyncio

import pytest

from promptweave.models import Message, ModelConfig, create_backend
from promptweave.models.cache import CompletionCache
from promptweave.models.runtime import ModelRuntime

pytestmark = pytest.mark.embedded

MT = [Message("system", "You are a professional translator. Answer with the translation only."),
      Message("user", "Translate from English to Spanish:\nGood morning, my friend.")]


async def test_http_round_trip_returns_text_and_usage(llama_server, tmp_path):
    cfg = ModelConfig(backend="openai", base_url=llama_server, model="x", max_tokens=24)
    cache = CompletionCache(tmp_path / "cache.sqlite")
    runtime = ModelRuntime(cfg, create_backend(cfg), cache=cache)
    try:
        result = await runtime.chat(MT)
        assert result.ok, result.error
        assert result.text and result.text.strip()
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        again = await runtime.chat(MT)
        assert again.cached and again.text == result.text
    finally:
        await runtime.aclose()
        cache.close()


async def test_concurrent_requests_all_answer(llama_server):
    cfg = ModelConfig(backend="openai", base_url=llama_server, model="x", max_tokens=6, cache=False,
                      max_concurrency=3)
    runtime = ModelRuntime(cfg, create_backend(cfg))
    try:
        results = await asyncio.gather(*[
            runtime.chat([Message("user", f"Say the number {i} in German, one word.")]) for i in range(3)])
        assert all(r.ok and r.text for r in results), [r.error for r in results]
        assert runtime.ledger.calls == 3 and runtime.ledger.errors == 0
    finally:
        await runtime.aclose()

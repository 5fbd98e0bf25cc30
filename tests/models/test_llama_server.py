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


@pytest.mark.embedded
def test_translation_pipeline_through_the_openai_backend(llama_server, tmp_path):
    """The quickstart's pipeline, with the model behind a real llama.cpp server on 127.0.0.1."""
    import json

    from promptweave import run_pipeline
    from tests.helpers import REPO

    summary = run_pipeline(REPO / "configs" / "tsp.yaml", [
        "model.backend=openai", f"model.base_url={llama_server}", "model.model=qwen",
        "model.max_concurrency=2", "data.limit=4", f"output={tmp_path}"])
    assert summary.errors == 0 and summary.ledger.calls == 4
    rows = [json.loads(line) for line in (summary.run_dir / "results.jsonl").read_text().splitlines()]
    assert all(r["outputs"]["hyp"]["value"] for r in rows)
    assert summary.scores["metrics"]["bleu"]["corpus"] > 15
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["models"]["default"]["base_url"].startswith("http://127.0.0.1:")

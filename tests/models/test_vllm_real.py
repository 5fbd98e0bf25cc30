"""The vLLM backend on the real engine (skipped where vllm is not installed): the embedded model,
converted for vLLM, served in-process through ``ModelRuntime``. One engine serves the module;
on two CPU cores it starts in about a minute, so the prompts are short and the runs few."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptweave.models import Message, ModelConfig, vllm_engine
from promptweave.models.runtime import ModelRuntime

pytestmark = [pytest.mark.vllm, pytest.mark.embedded, pytest.mark.slow]

# dtype/max_model_len/seed only: on a CPU the backend fills in enforce_eager and gpu_memory_utilization
OPTIONS = {"dtype": "bfloat16", "max_model_len": 1024, "seed": 0}
WORDS = ["house", "tree", "water", "bread"]


@pytest.fixture(scope="module")
def hf_model_dir(embedded_model_path: Path) -> Iterator[Path]:
    pytest.importorskip("vllm", reason="vllm is not installed (python -m promptweave.models.vllm_install)")
    pytest.importorskip("gguf", reason="the GGUF conversion needs the vllm-embedded extra")
    pytest.importorskip("accelerate", reason="the GGUF conversion needs the vllm-embedded extra")
    from promptweave.models.vllm_model import embedded_hf_dir

    yield embedded_hf_dir()  # cached under $PROMPTWEAVE_HOME/models after the first conversion
    vllm_engine.shutdown_all()


def _rows(word: str) -> list[Message]:
    return [Message("system", "You are a translator. Answer with the translation only."),
            Message("user", f"Translate into German: {word}")]


def _spy(backend: vllm_engine.VLLMChatModel, sizes: list[int]) -> None:
    original = backend.complete_batch

    async def spy(batch: Any, params: Any) -> Any:
        sizes.append(len(batch))
        return await original(batch, params)

    backend.complete_batch = spy  # type: ignore[method-assign]


async def test_default_batch_takes_every_row_in_flight(hf_model_dir):
    cfg = ModelConfig(backend="vllm", model=str(hf_model_dir), max_tokens=16, cache=False, options=OPTIONS)
    backend = vllm_engine.create(cfg)
    sizes: list[int] = []
    _spy(backend, sizes)
    runtime = ModelRuntime(cfg, backend)
    assert runtime.concurrency == vllm_engine.DEFAULT_MAX_BATCH  # not model.max_concurrency's 8
    results = await asyncio.gather(*[runtime.chat(_rows(w)) for w in WORDS])
    assert all(r.ok and r.text and r.text.strip() for r in results), [r.error for r in results]
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in results)
    assert sizes == [4]  # the four rows went to the engine as one LLM.chat batch
    if not vllm_engine.has_gpu():
        kwargs = backend._shared.engine_kwargs
        assert kwargs["enforce_eager"] is True and 0.05 <= kwargs["gpu_memory_utilization"] <= 0.9


async def test_timeout_shorter_than_a_batch_fails_once_and_leaves_the_engine_idle(hf_model_dir):
    # 1 ms per request: a batch of 4 has 4 ms, far less than one decode step here
    cfg = ModelConfig(backend="vllm", model=str(hf_model_dir), max_tokens=16, cache=False, options=OPTIONS,
                      timeout=0.001, max_retries=3, backoff_base=0)
    backend = vllm_engine.create(cfg)
    runtime = ModelRuntime(cfg, backend)
    started = time.monotonic()
    results = await asyncio.gather(*[runtime.chat(_rows(w)) for w in WORDS])
    failed_after = time.monotonic() - started
    for r in results:  # failed at the deadline, once: not retried behind the batch still running
        assert not r.ok and r.attempts == 1
        assert "a batch of 4 requests ran past 0.004s (model.timeout 0.001s per request)" in (r.error or "")
    await runtime.aclose()  # waits for the engine to finish the overdue batch
    finished_after = time.monotonic() - started
    assert failed_after < finished_after
    shared = backend._shared
    assert not shared._llm.llm_engine.has_unfinished_requests()
    t0 = time.monotonic()
    shared.executor.submit(lambda: None).result(timeout=5)  # the engine thread is free at once
    assert time.monotonic() - t0 < 1.0
    # and the engine still serves: the same rows with a timeout that fits
    ok_cfg = ModelConfig(backend="vllm", model=str(hf_model_dir), max_tokens=16, cache=False, options=OPTIONS)
    again = await ModelRuntime(ok_cfg, vllm_engine.create(ok_cfg)).chat(_rows("tree"))
    assert again.ok, again.error


async def test_engine_that_cannot_start_gives_its_reason_as_the_row_error(hf_model_dir):
    if vllm_engine.has_gpu():
        pytest.skip("the failure provoked here is the CPU engine's host-memory check")
    # 0.99 of host memory is more than is free on any machine in use: vLLM's engine process refuses
    cfg = ModelConfig(backend="vllm", model=str(hf_model_dir), max_tokens=8, cache=False, max_retries=2,
                      backoff_base=0, options={**OPTIONS, "gpu_memory_utilization": 0.99})
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    results = await asyncio.gather(*[runtime.chat(_rows(w)) for w in WORDS[:2]])
    for r in results:
        assert not r.ok and r.attempts == 1
        error = r.error or ""
        assert error.startswith(f"vllm could not start {hf_model_dir}: ")
        # the engine process's own reason, not only "Engine core initialization failed"
        assert "memory" in error.lower() and "(in the engine process)" in error, error
        assert "lower model.options.gpu_memory_utilization (now 0.99)" in error
        assert "\n" not in error

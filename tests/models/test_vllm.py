"""The vLLM backend: batching and error isolation on a stand-in ``vllm`` module, then the real engine
(when vllm is installed) on the embedded model converted to a Hugging Face folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from promptweave.errors import MissingDependency
from promptweave.models import Message, ModelConfig, vllm_engine
from promptweave.models.runtime import ModelRuntime


def test_missing_vllm_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependency, match=r"vllm .*promptweave\[vllm\]"):
        vllm_engine.create(ModelConfig(backend="vllm", model="m"))


# ---------------------------------------------------------------- a stand-in vllm module


class _Out:
    def __init__(self, text: str, prompt: list[int]) -> None:
        self.prompt_token_ids = prompt
        self.outputs = [types.SimpleNamespace(text=text, token_ids=text.split(), finish_reason="stop")]


class FakeLLM:
    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model, self.kwargs = model, kwargs
        self.calls: list[tuple[list[Any], Any, dict[str, Any]]] = []
        FakeLLM.instances.append(self)

    def chat(self, conversations, sampling_params, use_tqdm=True, **kwargs):
        self.calls.append((conversations, sampling_params, kwargs))
        if any("TOO LONG" in str(c) for c in conversations):
            raise ValueError("prompt is longer than max_model_len")
        return [_Out(f"echo {conv[-1]['content']}", [1, 2, 3]) for conv in conversations]


@pytest.fixture
def fake_vllm(monkeypatch) -> Iterator[type[FakeLLM]]:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    yield FakeLLM
    vllm_engine.shutdown_all()


async def test_concurrent_rows_become_one_llm_chat_call(fake_vllm):
    cfg = ModelConfig(backend="vllm", model="fake-a", max_tokens=9, temperature=0.5, stop=["\n"],
                      max_concurrency=64, options={"dtype": "float32", "max_model_len": 512,
                                                   "tensor_parallel_size": 1})
    backend = vllm_engine.create(cfg)
    assert backend.max_batch == vllm_engine.DEFAULT_MAX_BATCH
    assert backend.identity == {"backend": "vllm", "model": "fake-a", "dtype": "float32", "max_model_len": 512}
    runtime = ModelRuntime(cfg, backend)
    results = await asyncio.gather(*[runtime.chat([Message("user", f"row {i}")]) for i in range(20)])
    assert [r.text for r in results] == [f"echo row {i}" for i in range(20)]
    assert results[0].prompt_tokens == 3 and results[0].completion_tokens == 3
    (llm,) = fake_vllm.instances
    assert llm.kwargs == {"dtype": "float32", "max_model_len": 512, "tensor_parallel_size": 1}
    assert len(llm.calls) == 1 and len(llm.calls[0][0]) == 20
    assert llm.calls[0][1] == {"temperature": 0.5, "max_tokens": 9, "stop": ["\n"]}


async def test_max_batch_splits_and_engines_are_shared(fake_vllm):
    cfg = ModelConfig(backend="vllm", model="fake-b", cache=False, options={"max_batch": 4})
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    other = ModelRuntime(cfg, vllm_engine.create(cfg))
    await asyncio.gather(*[runtime.chat([Message("user", f"r{i}")]) for i in range(10)],
                         other.chat([Message("user", "x")]))
    (llm,) = fake_vllm.instances  # both runtimes on one engine
    assert sum(len(c[0]) for c in llm.calls) == 11 and max(len(c[0]) for c in llm.calls) <= 4


async def test_one_bad_row_fails_alone(fake_vllm):
    cfg = ModelConfig(backend="vllm", model="fake-c", cache=False, max_retries=2, backoff_base=0)
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    rows = ["fine 1", "TOO LONG", "fine 2"]
    results = await asyncio.gather(*[runtime.chat([Message("user", r)]) for r in rows])
    assert [r.ok for r in results] == [True, False, True]
    assert "max_model_len" in (results[1].error or "") and results[1].attempts == 1


# ---------------------------------------------------------------- the real engine


def _export_hf(gguf: Path, dest: Path) -> Path:
    """Dequantize the embedded GGUF into a Hugging Face folder vLLM can load (cached)."""
    if (dest / "config.json").is_file():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.bfloat16)
        # the weights are dense now; drop the GGUF marker so that they can be saved as safetensors
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@pytest.fixture(scope="module")
def hf_model_dir(embedded_model_path: Path) -> Path:
    pytest.importorskip("vllm", reason="vllm is not installed (extra 'vllm')")
    pytest.importorskip("gguf", reason="the GGUF conversion needs the gguf package")
    from promptweave.models.embedded import models_dir

    return _export_hf(embedded_model_path, models_dir() / "hf-qwen2.5-coder-0.5b-instruct")


@pytest.mark.vllm
@pytest.mark.embedded
@pytest.mark.slow
async def test_real_engine_batches_rows_through_runtime(hf_model_dir):
    cfg = ModelConfig(backend="vllm", model=str(hf_model_dir), max_tokens=16, cache=False,
                      # on CPU "gpu_memory_utilization" is the share of host memory vLLM reserves;
                      # eager mode skips a torch.compile warm-up that takes minutes on two cores
                      options={"dtype": "bfloat16", "max_model_len": 1024, "seed": 0,
                               "gpu_memory_utilization": 0.3, "enforce_eager": True})
    backend = vllm_engine.create(cfg)
    sizes: list[int] = []
    original = backend.complete_batch

    async def spy(batch, params):
        sizes.append(len(batch))
        return await original(batch, params)

    backend.complete_batch = spy  # type: ignore[method-assign]
    runtime = ModelRuntime(cfg, backend)
    words = ["house", "tree", "water", "bread"]
    try:
        results = await asyncio.gather(*[
            runtime.chat([Message("system", "You are a translator. Answer with the translation only."),
                          Message("user", f"Translate into German: {w}")]) for w in words])
        assert all(r.ok and r.text and r.text.strip() for r in results), [r.error for r in results]
        assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in results)
        assert sizes == [4]  # the four rows went to the engine as one LLM.chat batch
    finally:
        vllm_engine.shutdown_all()

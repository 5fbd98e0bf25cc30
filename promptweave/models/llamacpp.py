"""llama.cpp in-process through llama-cpp-python: the embedded default backend.

``model: default`` is the packaged Qwen2.5-Coder-0.5B-Instruct GGUF (see :mod:`.embedded`); any
other value is the path of a GGUF file. ``options``: ``n_ctx`` (4096), ``n_threads`` (all cores),
``n_batch``, ``chat_format`` (default: the template stored in the GGUF), ``seed``,
``extra_bufts`` (``auto``: llama.cpp's repacked/AMX weight buffers unless a probe in a child
process sees them crash on this machine, see :mod:`.llamacpp_probe`; ``on``; ``off``); any other
keyword of ``llama_cpp.Llama`` (``n_gpu_layers``, ``flash_attn``, ...) passes through.

One ``Llama`` object is not thread-safe, and a process rarely has memory for two copies of the
same weights, so every backend that names the same file and options shares one loaded model. It
loads on the first call and runs every call on its own single worker thread: calls queue there in
order, the event loop never blocks, and a call whose caller gave up before it started is dropped.
A call already generating runs to its end (bounded by ``max_tokens``); llama-cpp-python has no way
to interrupt ``create_chat_completion``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependency
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .embedded import MODEL_NAME, MODEL_SHA256, default_model_path
from .llamacpp_probe import parse_setting, resolve_extra_bufts
from .spec import ModelConfig

DEFAULT_N_CTX = 4096

# llama-cpp-python (0.3.x) builds ``llama_model_params`` inside ``Llama.__init__`` from
# ``llama_model_default_params()`` and has no keyword for ``use_extra_bufts``; the only way in is
# to hand it defaults with the field turned off, for the duration of one load. Loads hold this lock
# so that no other load sees the substituted defaults.
_load_lock = threading.Lock()


@contextlib.contextmanager
def model_defaults(use_extra_bufts: bool) -> Iterator[None]:
    """Within this block, ``llama_cpp.Llama(...)`` loads with ``use_extra_bufts`` as given."""
    import llama_cpp
    import llama_cpp.llama_cpp as capi

    with _load_lock:
        if use_extra_bufts:
            yield
            return
        if "use_extra_bufts" not in {f[0] for f in capi.llama_model_params._fields_}:
            raise BackendError(f"llama-cpp-python {llama_cpp.__version__} cannot turn off extra buffer types; "
                               "install a tested version: pip install 'llama-cpp-python>=0.3.36,<0.4'")
        original = capi.llama_model_default_params

        def without_extra_bufts() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        capi.llama_model_default_params = without_extra_bufts
        try:
            yield
        finally:
            capi.llama_model_default_params = original


class _SharedLlama:
    """One loaded model and the one thread allowed to touch it."""

    def __init__(self, path: Path, kwargs: dict[str, Any], extra_bufts: bool = True) -> None:
        self.path, self.kwargs, self.extra_bufts = path, kwargs, extra_bufts
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llamacpp-{path.name}")
        self._llm: Any = None

    def llm(self) -> Any:
        # only ever called on the worker thread, so loading needs no lock of its own
        if self._llm is None:
            import llama_cpp

            with model_defaults(self.extra_bufts):
                llm = llama_cpp.Llama(model_path=str(self.path), verbose=False, **self.kwargs)
            if llm.model_params.use_extra_bufts != self.extra_bufts:  # a llama-cpp-python that builds them elsewhere
                llm.close()
                raise BackendError(f"llama-cpp-python {llama_cpp.__version__} ignored use_extra_bufts="
                                   f"{self.extra_bufts}; install a tested version: "
                                   "pip install 'llama-cpp-python>=0.3.36,<0.4'")
            self._llm = llm
        return self._llm

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            self.executor.submit(llm.close).result()
        self.executor.shutdown(wait=True)


_shared: dict[tuple[str, str], _SharedLlama] = {}
_shared_lock = threading.Lock()


def _get_shared(path: Path, kwargs: dict[str, Any], extra_bufts: bool = True) -> _SharedLlama:
    key = (str(path.resolve()), repr(sorted(kwargs.items())) + f"|extra_bufts={extra_bufts}")
    with _shared_lock:
        shared = _shared.get(key)
        if shared is None:
            shared = _shared[key] = _SharedLlama(path, kwargs, extra_bufts)
        return shared


@atexit.register
def _close_at_exit() -> None:
    # Free the models while llama_cpp's globals still exist; ``Llama.__del__`` during interpreter
    # teardown fails noisily. concurrent.futures has joined the worker threads by now.
    for shared in list(_shared.values()):
        llm, shared._llm = shared._llm, None
        if llm is not None:
            llm.close()


def unload_all() -> None:
    """Free every loaded model (tests, long-lived processes switching models)."""
    with _shared_lock:
        items = list(_shared.values())
        _shared.clear()
    for shared in items:
        shared.close()


def _text_content(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise BackendError(f"the llamacpp backend is text-only; got a '{part.get('type')}' part")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


class LlamaCppChatModel(BaseChatModel):
    max_parallel = 1  # one worker thread serves the model; more in flight would only queue there

    def __init__(self, shared: _SharedLlama, identity: dict[str, Any]) -> None:
        self._shared = shared
        self.identity = identity

    def _run(self, messages: list[dict[str, str]], kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._shared.llm().create_chat_completion(messages=messages, **kwargs)  # type: ignore[no-any-return]

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        msgs = [{"role": m.role, "content": _text_content(m.content)} for m in messages]
        kwargs = params.sampling_kwargs()
        loop = asyncio.get_running_loop()
        try:
            resp = await loop.run_in_executor(self._shared.executor, self._run, msgs, kwargs)
        except (ValueError, RuntimeError) as exc:
            # prompt longer than n_ctx, a file llama.cpp cannot load, ...: trying again won't help
            raise BackendError(f"llama.cpp: {exc}") from None
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason"),
        )


def _llama_kwargs(options: dict[str, Any], llama_cls: Any) -> dict[str, Any]:
    opts = dict(options)
    opts.pop("extra_bufts", None)  # not a Llama keyword: see model_defaults
    kwargs: dict[str, Any] = {
        "n_ctx": int(opts.pop("n_ctx", DEFAULT_N_CTX)),
        "n_threads": int(opts.pop("n_threads", None) or os.cpu_count() or 1),
    }
    for name in ("n_batch", "seed"):
        value = opts.pop(name, None)
        if value is not None:
            kwargs[name] = int(value)
    if (chat_format := opts.pop("chat_format", None)) is not None:
        kwargs["chat_format"] = str(chat_format)
    accepted = set(inspect.signature(llama_cls.__init__).parameters) - {"self", "model_path", "kwargs", "verbose"}
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise ConfigError(f"unknown llamacpp option(s) {', '.join(unknown)}; known: n_ctx, n_threads, "
                          "n_batch, chat_format, seed, extra_bufts, or any keyword of llama_cpp.Llama",
                          key="model.options")
    kwargs.update(opts)
    return kwargs


def accepts_images(cfg: ModelConfig) -> bool:
    """A text GGUF model: images are refused when the pipeline is validated."""
    return False


def create(cfg: ModelConfig) -> LlamaCppChatModel:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependency("llama-cpp-python", "local", exc) from None
    kwargs = _llama_kwargs(cfg.options, llama_cpp.Llama)
    setting = parse_setting(cfg.options.get("extra_bufts"))
    if cfg.model == "default":
        path = default_model_path()
        # a fixed name and hash, never the local path: cache entries move between machines
        identity: dict[str, Any] = {"backend": "llamacpp", "model": MODEL_NAME,
                                    "sha256_or_size": f"sha256:{MODEL_SHA256}"}
    else:
        path = Path(cfg.model).expanduser()
        if not path.is_file():
            raise ConfigError(f"GGUF file not found: {path} (use 'default' for the embedded model)",
                              key="model.model")
        identity = {"backend": "llamacpp", "model": path.name,
                    "sha256_or_size": f"size:{path.stat().st_size}"}
    for name in ("chat_format", "seed"):  # they change the output; threads and batch sizes do not
        if name in kwargs:
            identity[name] = kwargs[name]
    # the probe (a child process, once per machine, build and model) runs here, before any progress
    # display, so that its one-time notice is readable
    return LlamaCppChatModel(_get_shared(path, kwargs, resolve_extra_bufts(setting, path)), identity)

"""Any LangChain chat model, named as ``model: "package.module:Class"``.

``options``: ``kwargs`` (constructor keywords of the class), ``pass_params`` (default true: send
temperature, max_tokens and, when set, top_p and seed as call-time keywords of ``ainvoke``; turn it
off for a model class that rejects them). Stop sequences always go through ``ainvoke(stop=...)``.

Provider exceptions become :class:`BackendError`: rate limits, timeouts, connection failures and
5xx answers are retryable, when the exception says so through its class name or an HTTP status.
"""

from __future__ import annotations

import re
from typing import Any

from .. import secrets
from ..errors import ConfigError, MissingDependency
from ..registry import load_object
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .replies import excerpt, is_connect_failure, retry_after_from, token_count
from .spec import ModelConfig

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_RETRYABLE_NAMES = re.compile(r"RateLimit|Timeout|TimedOut|Connection|Overloaded|ServiceUnavailable|"
                              r"InternalServer|APIConnection|Throttl", re.IGNORECASE)
is_secret_name = secrets.is_secret_name


def _jsonable(value: Any) -> Any:
    """A stable, JSON-safe stand-in for a constructor argument (no ``repr`` with addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not is_secret_name(str(k))}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _register_secrets(value: Any, secret: bool = False) -> None:
    """Register every secret-named constructor argument (nested ones too) with the scrubber."""
    if isinstance(value, dict):
        for k, v in value.items():
            _register_secrets(v, secret or is_secret_name(str(k)))
    elif isinstance(value, (list, tuple)):
        for v in value:
            _register_secrets(v, secret)
    elif type(value).__name__ == "SecretStr":
        secrets.register(value.get_secret_value())
    elif secret:
        secrets.register(value)


def _public_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in kwargs.items():
        if is_secret_name(name) or type(value).__name__ == "SecretStr":
            continue
        out[name] = _jsonable(value)
    return out


def _status(exc: BaseException) -> int | None:
    for obj in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(obj, attr, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def _retry_after(exc: BaseException) -> float | None:
    return retry_after_from(getattr(getattr(exc, "response", None), "headers", None))


def to_backend_error(exc: BaseException) -> BackendError:
    """Classify a provider's exception; unknown ones are not retried."""
    status = _status(exc)
    name = type(exc).__name__
    retryable = (
        (status is not None and (status in _RETRYABLE_STATUS or status >= 500))
        or isinstance(exc, (TimeoutError, ConnectionError))
        or any(_RETRYABLE_NAMES.search(cls.__name__) for cls in type(exc).__mro__)
    )
    text = excerpt(str(exc), 200)
    label = f"HTTP {status}: " if status else ""
    kind = "status" if status else "connect" if is_connect_failure(exc) else None
    return BackendError(f"{label}{name}: {text}", retryable=retryable,
                        retry_after=_retry_after(exc) if retryable else None, status=status, kind=kind)


def _text(content: Any) -> str:
    """The text of a reply's content: a string, or the text parts of a list; anything else is a
    malformed reply (a retryable error), never its ``str()``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif not (isinstance(p, dict) and p.get("type") in ("reasoning", "thinking", "tool_use")):
                raise BackendError(f"malformed reply: a content part that is not text: {excerpt(repr(p))}",
                                   retryable=True, kind="malformed")
        return "".join(parts)
    raise BackendError(f"malformed reply: content of type {type(content).__name__}: {excerpt(repr(content))}",
                       retryable=True, kind="malformed")


def _count(usage: Any, name: str) -> int:
    raw = usage.get(name) if isinstance(usage, dict) else None
    if raw is None:
        return 0
    count = token_count(raw)
    if count is None:
        raise BackendError(f"malformed reply: usage {name} is not a count: {excerpt(repr(raw))}",
                           retryable=True, kind="malformed")
    return count


class LangChainChatModel(BaseChatModel):
    def __init__(self, chat_model: Any, identity: dict[str, Any], pass_params: bool = True) -> None:
        from langchain_core import messages as lc

        self.chat_model = chat_model
        self.identity = identity
        self.pass_params = pass_params
        self._classes = {"system": lc.SystemMessage, "user": lc.HumanMessage, "assistant": lc.AIMessage}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        lc_messages = [self._classes[m.role](content=m.content) for m in messages]
        kwargs = params.sampling_kwargs()
        if not self.pass_params:  # the chat model's own settings rule; only stop goes per call
            kwargs = {"stop": kwargs["stop"]} if "stop" in kwargs else {}
        try:
            reply = await self.chat_model.ainvoke(lc_messages, **kwargs)
        except BackendError:
            raise
        except Exception as exc:  # every provider has its own exception tree
            raise to_backend_error(exc) from exc
        usage = getattr(reply, "usage_metadata", None) or {}
        meta = getattr(reply, "response_metadata", None)
        finish = (meta.get("finish_reason") or meta.get("stop_reason")) if isinstance(meta, dict) else None
        return Completion(
            text=_text(getattr(reply, "content", reply)),
            prompt_tokens=_count(usage, "input_tokens"),
            completion_tokens=_count(usage, "output_tokens"),
            finish_reason=finish if isinstance(finish, str) else None,
        )


def create(cfg: ModelConfig) -> LangChainChatModel:
    try:
        import langchain_core.messages  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("langchain-core", "langchain", exc) from None
    opts = dict(cfg.options)
    kwargs = opts.pop("kwargs", None) or {}
    pass_params = bool(opts.pop("pass_params", True))
    _register_secrets(kwargs)
    if opts:
        raise ConfigError(f"unknown langchain option(s) {', '.join(sorted(opts))}; known: kwargs, pass_params",
                          key="model.options")
    if ":" not in cfg.model and "." not in cfg.model:
        raise ConfigError(f"'{cfg.model}' is not a class path; write it as 'package.module:Class', "
                          "e.g. langchain_openai:ChatOpenAI", key="model.model")
    try:
        cls = load_object(cfg.model)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {cfg.model}: {exc}", key="model.model") from None
    try:
        chat_model = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - pydantic validation errors and friends
        raise ConfigError(f"cannot create {cfg.model}: {secrets.scrub(' '.join(str(exc).split()))[:300]}",
                          key="model.options.kwargs") from None
    identity = {"backend": "langchain", "model": cfg.model, "kwargs": _public_kwargs(kwargs)}
    return LangChainChatModel(chat_model, identity, pass_params)

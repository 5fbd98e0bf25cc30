"""Any OpenAI-compatible chat endpoint: OpenAI, a vLLM server, a llama.cpp server, Ollama.

The client's own retries are off (``max_retries=0``): the runtime owns retries, and this
module only translates failures into :class:`BackendError` with ``retryable``/``retry_after``.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai

from ..errors import ConfigError
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .spec import ModelConfig

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _retry_after(headers: httpx.Headers | None) -> float | None:
    if not headers:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000.0 if name.endswith("-ms") else seconds
    return None


class OpenAIChatModel(BaseChatModel):
    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 extra_body: dict[str, Any] | None = None, max_connections: int = 256) -> None:
        self.model = model
        self.extra_body = extra_body or {}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "EMPTY", base_url=base_url, max_retries=0,
            http_client=httpx.AsyncClient(limits=limits, timeout=None),
        )
        # never the key: the identity feeds cache keys and manifests
        self.identity = {"backend": "openai", "model": model, "base_url": str(self.client.base_url)}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        kwargs: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in messages],
                                  "temperature": params.temperature, "max_tokens": params.max_tokens}
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        if params.stop:
            kwargs["stop"] = params.stop
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        try:
            resp = await self.client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            raise BackendError(
                f"HTTP {exc.status_code}: {_short(exc.message)}",
                retryable=exc.status_code in _RETRYABLE_STATUS,
                retry_after=_retry_after(exc.response.headers if exc.response is not None else None),
                status=exc.status_code,
            ) from None
        except openai.APITimeoutError:
            raise BackendError("request timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise BackendError(f"connection error: {_short(str(exc.__cause__ or exc))}",
                               retryable=True) from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            raise BackendError(f"malformed response: {_short(str(exc))}", retryable=True) from None
        if not resp.choices:
            raise BackendError("response has no choices", retryable=True)
        choice = resp.choices[0]
        usage = resp.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason,
        )

    async def aclose(self) -> None:
        await self.client.close()


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def create(cfg: ModelConfig) -> OpenAIChatModel:
    api_key = None
    if cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env)
        if api_key is None and cfg.base_url is None:
            raise ConfigError(f"environment variable {cfg.api_key_env} is not set; export it with your API key",
                              key="model.api_key_env")
    elif cfg.base_url is None:
        api_key = os.environ.get("OPENAI_API_KEY")
        if api_key is None:
            raise ConfigError("no base_url and OPENAI_API_KEY is not set; set model.base_url for a local "
                              "server or export OPENAI_API_KEY", key="model.base_url")
    opts = dict(cfg.options)
    return OpenAIChatModel(cfg.model, cfg.base_url, api_key, extra_body=opts.pop("extra_body", None),
                           max_connections=max(cfg.max_concurrency, 16))

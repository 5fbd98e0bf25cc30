"""Any OpenAI-compatible chat endpoint: OpenAI, a vLLM server, a llama.cpp server, Ollama.

The client's own retries are off (``max_retries=0``): the runtime owns retries, and this
module only translates failures into :class:`BackendError` with ``retryable``/``retry_after``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import openai

from .. import secrets
from ..errors import ConfigError
from . import openai_lean
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .replies import excerpt, is_connect_failure, parse_chat_completion, retry_after_from
from .spec import ModelConfig

_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


# lean: aiohttp without the SDK per request (openai_lean.py), where it sends what the SDK would;
# auto is lean wherever openai_lean.usable() says so (the SDK's request layers were half of serve's
# CPU per request and most of DC²'s client CPU), else the SDK's aiohttp client
TRANSPORTS = ("auto", "aiohttp", "httpx", "lean")


def _http_client(max_connections: int, transport: str = "auto") -> Any:
    """The SDK's own async HTTP client, with a pool sized to the concurrency and no timeout of
    its own (the runtime owns timeouts).

    ``aiohttp`` (the SDK's ``DefaultAioHttpClient``, installed by ``openai[aiohttp]``) spends
    about 40% less CPU per request than the SDK's default httpx client, which is what bounds
    requests/s against a fast server (benchmarks/RESULTS.md). ``auto`` takes it when it is
    installed and no proxy variable is set (it ignores HTTP(S)_PROXY), else ``httpx``. A plain
    ``httpx.AsyncClient`` is never used: its httpcore 1.0 pool rescans every connection for
    every request, which cost another 40% at concurrency 64.
    """
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(max_connections=max_connections,
                                                     max_keepalive_connections=max_connections)
    if transport == "aiohttp" or (transport in ("auto", "lean") and not openai_lean.proxy_set()):
        aio = getattr(openai, "DefaultAioHttpClient", None)
        try:
            if aio is None:
                raise RuntimeError("this openai version has no aiohttp client")
            return aio(limits=limits, timeout=None)
        except RuntimeError:  # the SDK raises this when aiohttp is missing
            if transport == "aiohttp":
                raise ConfigError("transport aiohttp needs aiohttp; install it with: pip install 'openai[aiohttp]'",
                                  key="model.options.transport") from None
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=None)


def accepts_images(cfg: ModelConfig) -> bool:
    """Image content parts are sent as is; whether the served model can see them is the server's say."""
    return True


class OpenAIChatModel(BaseChatModel):
    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 extra_body: dict[str, Any] | None = None, max_connections: int = 64,
                 transport: str = "auto") -> None:
        self.model = model
        self.extra_body = extra_body or {}
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "EMPTY", base_url=base_url, max_retries=0,
            http_client=_http_client(max_connections, transport),
        )
        self.lean = (openai_lean.LeanPoster(self.client, max_connections)
                     if transport in ("auto", "lean") and openai_lean.usable(str(self.client.base_url)) else None)
        # never the key: the identity feeds cache keys and manifests
        self.identity = {"backend": "openai", "model": model, "base_url": public_url(str(self.client.base_url))}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        # the body byte for byte as chat.completions.create writes it: sampling keys in its
        # (alphabetical) order, extra_body merged shallowly at the end
        payload: dict[str, Any] = {"model": self.model, "messages": [m.to_dict() for m in messages],
                                   **dict(sorted(params.sampling_kwargs().items())), **self.extra_body}
        try:
            # the SDK's plain POST (its URL, headers, auth and status errors), not
            # chat.completions.create: that walks every message through its TypedDict transform,
            # ~0.2 ms CPU per message (5.9 ms for a 31-turn chat vs 0.6 ms), which bounded a
            # multi-turn caller (benchmarks/serve.py). The raw body is parsed and checked here.
            answer = await self.lean.post(payload) if self.lean is not None else None
            if answer is not None:
                status, headers, body = answer
            else:  # no lean transport, or a redirect it leaves to the SDK's own client
                raw = await self.client.post("/chat/completions", cast_to=httpx.Response, body=payload)
                status, headers, body = raw.status_code, raw.headers, raw.content
        except openai.APIStatusError as exc:
            said = exc.message
            if said.strip() == f"Error code: {exc.status_code}" and exc.response is not None:
                said = f"{said} - {exc.response.text}"  # a body the SDK did not read as JSON (HTML...)
            raise BackendError(
                f"HTTP {exc.status_code}: {excerpt(said)}",
                retryable=exc.status_code in _RETRYABLE_STATUS,
                retry_after=retry_after_from(exc.response.headers if exc.response is not None else None),
                status=exc.status_code, kind="status",
            ) from None
        except openai.APIConnectionError as exc:  # APITimeoutError included
            raise self._connection_error(exc, isinstance(exc, openai.APITimeoutError)) from None
        except openai.OpenAIError as exc:  # anything else the SDK raises about a reply
            raise BackendError(f"malformed reply: {type(exc).__name__}: {excerpt(str(exc))}",
                               retryable=True, kind="malformed") from None
        except Exception as exc:  # the transport's own errors (a bad gzip body...) that the SDK lets through
            if self.lean is not None and isinstance(exc, openai_lean.transport_errors()):  # as the SDK wraps them
                raise self._connection_error(exc, openai_lean.sdk_timeout_class(exc)) from None
            if not type(exc).__module__.startswith(("httpx", "httpcore", "aiohttp", "h11", "anyio")):
                raise
            raise BackendError(f"connection error: {type(exc).__name__}: {excerpt(str(exc))}", retryable=True,
                               kind="connection") from None
        return parse_chat_completion(body, headers.get("content-type"), status)

    def _connection_error(self, exc: BaseException, sdk_timeout: bool) -> BackendError:
        root = _root_cause(exc)
        if is_connect_failure(exc):
            return BackendError(f"cannot connect to {self.identity['base_url']}: "
                                f"{excerpt(str(root) or type(root).__name__)}", retryable=True, kind="connect")
        if sdk_timeout and _is_timeout(root):
            return BackendError("request timed out", retryable=True, kind="timeout")
        return BackendError(f"connection error: {excerpt(str(root) or type(root).__name__)}",
                            retryable=True, kind="connection")

    async def aclose(self) -> None:
        if self.lean is not None:
            await self.lean.aclose()
        await self.client.close()


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _is_timeout(exc: BaseException) -> bool:
    # the SDK's aiohttp transport reports a dropped connection as a connect *timeout*; the
    # root cause tells a reset from a real timeout, so that error reasons say which it was
    return isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or isinstance(
        exc, openai.APITimeoutError)


def public_url(url: str) -> str:
    """``url`` without what may be a secret: the password of ``user:pass@host`` and the values of
    secret-named query parameters (``?api-key=...``), each registered with the scrubber."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password:
        secrets.register(password)
        netloc = netloc.rsplit("@", 1)[1]
    query = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in query:
        if secrets.is_secret_name(name):
            secrets.register(value)
    clean = urlencode([(k, "***" if secrets.is_secret_name(k) else v) for k, v in query], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, clean, parts.fragment))


def create(cfg: ModelConfig) -> OpenAIChatModel:
    api_key = None
    if cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env)
        secrets.register(api_key)
        if api_key is None and cfg.base_url is None:
            raise ConfigError(f"environment variable {cfg.api_key_env} is not set; export it with your API key",
                              key="model.api_key_env")
    elif cfg.base_url is None:
        api_key = os.environ.get("OPENAI_API_KEY")
        secrets.register(api_key)
        if api_key is None:
            raise ConfigError("no base_url and OPENAI_API_KEY is not set; set model.base_url for a local "
                              "server or export OPENAI_API_KEY", key="model.base_url")
    opts = dict(cfg.options)
    transport = opts.pop("transport", "auto")
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}",
                          key="model.options.transport")
    # twice the concurrency: a call cut off by the runtime's timeout may hold its connection a moment
    return OpenAIChatModel(cfg.model, cfg.base_url, api_key, extra_body=opts.pop("extra_body", None),
                           max_connections=2 * cfg.max_concurrency, transport=transport)

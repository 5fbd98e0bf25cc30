"""The ``lean`` transport of the openai backend: one aiohttp POST per call, without the SDK's
per-request machinery.

Why: behind ``promptweave serve`` and a fast model, the SDK's ``post`` (request options, header
merging, an httpx request and response wrapped around aiohttp's) was half of the server's CPU per
chat request: 2.0 ms, 1.0 ms without it (benchmarks/serve.py, py-spy). This sends the same bytes (the SDK's
JSON encoding, its default and auth headers) straight through an aiohttp session, and leaves
every failure to the SDK's wording: a non-2xx answer is turned into the SDK's own status error by
the SDK's own function, and transport errors are mapped as the SDK's aiohttp transport maps them
(tests/models/test_openai_lean.py compares the two transports fault by fault).

It is taken only where nothing else of the SDK's is needed: aiohttp installed, no proxy
variable set (aiohttp would ignore it), a base URL without user info or query string.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import openai

try:  # the http library this SDK builds its responses and errors from
    import httpx2 as sdk_httpx
except ImportError:
    import httpx as sdk_httpx  # type: ignore[no-redef]

try:
    import aiohttp
except ImportError:  # the ``lean`` transport needs it; the SDK transports do not
    aiohttp = None  # type: ignore[assignment]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


def proxy_set() -> bool:
    """Whether a proxy variable is set (the SDK's httpx client honours them; aiohttp does not)."""
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARS)


def usable(base_url: str) -> bool:
    """Whether the lean transport sends to ``base_url`` exactly what the SDK would."""
    if aiohttp is None or proxy_set():
        return False
    parts = urlsplit(base_url)
    return parts.scheme in ("http", "https") and not parts.query and "@" not in parts.netloc


_REDIRECTS = (301, 302, 303, 307, 308)  # the statuses httpx follows when they carry a Location


class LeanPoster:
    """POSTs JSON to ``{base_url}/chat/completions`` through one pooled aiohttp session."""

    def __init__(self, client: openai.AsyncOpenAI, max_connections: int) -> None:
        self.client = client
        self.url = str(client.base_url).rstrip("/") + "/chat/completions"
        # the SDK's headers; the encodings its http client advertises, since its decoders are used
        http = getattr(client, "_client", None)
        encodings = http.headers.get("accept-encoding") if http is not None else None
        self.headers = {k: v for k, v in {"Accept-Encoding": encodings or "gzip, deflate", **client.default_headers,
                                          **client.auth_headers, "X-Stainless-Retry-Count": "0"}.items()
                        if isinstance(v, str)}
        self.max_connections = max_connections
        self._session: Any = None

    def _open(self) -> Any:
        # created on first use: an aiohttp session belongs to the running loop. The TLS context
        # (certificates) and keep-alive expiry are those of the SDK's own aiohttp transport.
        sdk = getattr(getattr(self.client, "_client", None), "_transport", None)
        limits = getattr(sdk, "limits", None)
        connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=getattr(sdk, "ssl_context", None) or True,
                                         keepalive_timeout=getattr(limits, "keepalive_expiry", None) or 5.0)
        # bodies are decoded by the SDK's http library, as on the SDK's path (same errors)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                     auto_decompress=False)

    async def post(self, payload: dict[str, Any]) -> tuple[int, Any, bytes] | None:
        """(status, headers, body) of a 2xx answer; any other status raises the SDK's
        :class:`openai.APIStatusError` for it, as ``client.post`` would. ``None`` for a redirect:
        the caller sends the request through the SDK's own client, which follows redirects its
        way (methods, bodies, its limit of redirects and its error for a loop)."""
        if self._session is None:
            self._session = self._open()
        # the SDK's encoding (openapi_dumps): compact, non-ASCII kept, NaN refused
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        async with self._session.post(self.url, data=data, headers=self.headers, allow_redirects=False) as resp:
            if resp.status in _REDIRECTS and "Location" in resp.headers:
                return None
            body = await resp.read()
            if 200 <= resp.status < 300 and "Content-Encoding" not in resp.headers:
                return resp.status, resp.headers, body
            request = sdk_httpx.Request("POST", self.url)
            headers = [(k, v) for k, v in resp.raw_headers if k.lower() != b"transfer-encoding"]
            try:  # decodes the body (gzip...) as the SDK's http client would
                response = sdk_httpx.Response(resp.status, headers=headers, content=body, request=request)
            except sdk_httpx.DecodingError as exc:
                raise openai.APIConnectionError(request=request) from exc  # what the SDK raises for it
        if 200 <= response.status_code < 300:
            return response.status_code, response.headers, response.content
        raise self.client._make_status_error_from_response(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sdk_timeout_class(exc: BaseException) -> bool:
    """Whether the SDK's aiohttp transport would have raised this aiohttp error as an
    :class:`openai.APITimeoutError` (it maps every ``ClientConnectionError`` but a failed
    connect, a server disconnect included, to httpx's ``ConnectTimeout``)."""
    if aiohttp is None:
        return False
    return isinstance(exc, aiohttp.ClientConnectionError) and not isinstance(
        exc, (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError))


def transport_errors() -> tuple[type[BaseException], ...]:
    """What the lean transport itself raises about a connection (the SDK wraps each of these
    in an :class:`openai.APIConnectionError`)."""
    return (aiohttp.ClientError, OSError) if aiohttp is not None else (OSError,)

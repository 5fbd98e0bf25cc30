"""The openai backend's ``lean`` transport against the SDK's own (``aiohttp``): the same request
bytes, and for every answer and failure the same completion or the same error (message,
retryability, Retry-After, status, kind), against the real fault-injecting test server."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from promptweave.models.base import BackendError, GenParams, Message
from promptweave.models.openai_api import OpenAIChatModel
from promptweave.testing import request_log, serve

pytest.importorskip("aiohttp", reason="the lean transport needs aiohttp")

_ERR = json.dumps({"error": {"message": "slow down, key sk-123", "type": "rate_limit"}})
CANNED = [
    {"match": "^s429$", "status": 429, "body": _ERR, "type": "application/json", "headers": {"retry-after": "0.25"}},
    {"match": "^s500$", "status": 500, "body": json.dumps({"error": {"message": "boom"}}), "type": "application/json"},
    {"match": "^s503html$", "status": 503, "body": "<html><h1>503 Service Unavailable</h1></html>", "type": "text/html"},
    {"match": "^s400empty$", "status": 400, "body": "", "type": "application/json"},
    {"match": "^s401list$", "status": 401, "body": "[1, 2]", "type": "application/json"},
    {"match": "^s404text$", "status": 404, "body": "no such route", "type": "text/plain; charset=latin-1"},
    {"match": "^s307$", "status": 307, "body": "", "type": "text/plain"},
    # redirects the lean transport hands to the SDK's client: a loop, and a 303 (POST becomes GET)
    {"match": "^loop$", "status": 307, "body": "", "type": "text/plain", "headers": {"location": "/v1/chat/completions"}},
    {"match": "^see$", "status": 303, "body": "", "type": "text/plain", "headers": {"location": "/v1/models"}},
    {"match": "^html200$", "status": 200, "body": "<html>oops</html>", "type": "text/html"},
    {"match": "^null200$", "status": 200, "body": "null", "type": "application/json"},
    {"match": "^badgzip$", "status": 200, "body": "not gzip at all", "type": "application/json",
     "headers": {"content-encoding": "gzip"}},
]
CASES = ["hello there", "s429", "s500", "s503html", "s400empty", "s401list", "s404text", "s307", "html200",
         "null200", "badgzip", "ünïcødé ✓", "loop", "see"]


async def _outcome(model: OpenAIChatModel, text: str) -> Any:
    try:
        c = await model.complete([Message("user", text)], GenParams(max_tokens=8, top_p=0.5))
    except BackendError as exc:
        return ("error", str(exc), exc.retryable, exc.retry_after, exc.status, exc.kind)
    finally:
        await model.aclose()
    return ("ok", c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason)


def _both(url: str, text: str, key: str | None = "sk-test") -> dict[str, Any]:
    out = {}
    for transport in ("aiohttp", "lean"):
        model = OpenAIChatModel("m", url, key, extra_body={"seed": 3}, transport=transport)
        assert (model.lean is not None) == (transport == "lean")
        out[transport] = asyncio.run(_outcome(model, text))
    return out


@pytest.fixture(scope="module")
def canned_url() -> Any:
    with serve(reply="echo: {echo}", canned=json.dumps(CANNED)) as url:
        yield url


@pytest.mark.parametrize("text", CASES)
def test_same_outcome_as_the_sdk(canned_url: str, text: str) -> None:
    out = _both(canned_url, text)
    assert out["lean"] == out["aiohttp"]


def test_same_request_bytes_and_key(canned_url: str) -> None:
    before = request_log(canned_url)
    _both(canned_url, "count my bytes")
    log = request_log(canned_url)
    new = [k for k, v in log["log"].items() if log["texts"].get(k) == "count my bytes"]
    # both transports' bodies hash to one request key, arriving twice; one Authorization seen
    assert len(new) == 1 and len(log["log"][new[0]]) == 2 + len(before["log"].get(new[0], []))
    assert len(log["auth"]) == 1


def test_reset_connection_is_the_same_error() -> None:
    with serve(reset=1.0) as url:
        out = _both(url, "hi")
    assert out["lean"] == out["aiohttp"] and out["lean"][0] == "error"


def test_refused_connection_is_the_same_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _both(f"http://127.0.0.1:{port}/v1", "hi")
    assert out["lean"] == out["aiohttp"] and out["lean"][5] == "connect"


def test_lean_is_not_used_where_it_would_send_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OpenAIChatModel("m", "http://127.0.0.1:9/v1?api-version=1", "k", transport="lean").lean is None
    assert OpenAIChatModel("m", "http://u:p@127.0.0.1:9/v1", "k", transport="lean").lean is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert OpenAIChatModel("m", "http://127.0.0.1:9/v1", "k", transport="lean").lean is None


def test_same_request_line_headers_and_body() -> None:
    """Byte for byte, but for header-name case and the ``Connection: keep-alive`` that HTTP/1.1
    implies anyway."""
    seen: list[tuple[set[str], bytes]] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head[1:] if line}
            body = await reader.readexactly(int(fields["content-length"]))
            fields.pop("connection", None)
            seen.append(({head[0]} | {f"{k}: {v}" for k, v in fields.items()}, body))
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": "x"}}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(out), out))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for transport in ("aiohttp", "lean"):
            model = OpenAIChatModel("m", f"http://127.0.0.1:{port}/v1", "sk-x", extra_body={"seed": 1},
                                    transport=transport)
            await model.complete([Message("user", "héllo ✓")], GenParams(max_tokens=5, stop=["\n"]))
            await model.aclose()
        server.close()

    asyncio.run(main())
    (sdk_head, sdk_body), (lean_head, lean_body) = seen
    assert lean_head == sdk_head and lean_body == sdk_body
    assert "authorization: Bearer sk-x" in lean_head

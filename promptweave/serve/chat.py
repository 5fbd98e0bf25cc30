"""``POST /v1/chat/completions``, the one hot endpoint, as a bare ASGI handler in front of the
FastAPI app that serves everything else.

Why not a FastAPI route: against a fast model, the framework's per-request layers (its middleware
stack, dependency solving, ``Request``/``Response`` objects) were about a fifth of the server's CPU
per chat request (cProfile, benchmarks/serve.py). This handler reads the ASGI messages itself and
keeps the route's behaviour: the same checks in the same order (key, body size, UTF-8, JSON,
fields, session id), OpenAI-style error JSON for each, 500 with a log line for anything else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from ..memory import ReplyDiscarded, ReplyError, StoreUnavailable
from .auth import Auth, read_limited
from .config import ServeConfig
from .protocol import (APIError, completion_body, new_id, parse_chat_request, parse_json_body, session_id,
                       sse_chunks, text_of)
from .service import ChatService

log = logging.getLogger("promptweave.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/chat/completions"


def json_bytes(body: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's JSONResponse writes it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class ChatEndpoint:
    """The ASGI app: chat requests here, every other request to ``inner``."""

    def __init__(self, inner: ASGIApp, cfg: ServeConfig, auth: Auth, service: ChatService) -> None:
        self.inner, self.cfg, self.auth, self.service = inner, cfg, auth, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.inner(scope, receive, send)
            return
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if scope["method"] != "POST":
                raise APIError(405, f"{PATH} takes POST", code="method_not_allowed")
            await self._chat(scope, receive, tracked)
        except APIError as exc:
            if not started:
                await _respond(send, exc.status, json_bytes(exc.body()))
        except Exception:
            log.exception("request failed")
            if not started:  # once the reply is on its way, the connection is all that is left to close
                await _respond(send, 500, json_bytes(APIError(500, "internal error; see the server log",
                                                              type_="api_error").body()))

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = {}
        repeated: set[bytes] = set()
        for name, value in scope["headers"]:
            if name in (b"authorization", b"x-session-id", b"content-length"):
                if name in headers:
                    repeated.add(name)
                headers[name] = value
        server = self.cfg.server
        auth = headers.get(b"authorization", b"").decode("latin-1")
        ns = self.auth.namespace_of([auth, auth] if b"authorization" in repeated else auth)
        if b"x-session-id" in repeated:
            raise APIError(400, "send one X-Session-Id header, not several", param="user", code="conflicting_session")
        raw = await read_limited(_chunks(receive), headers.get(b"content-length", b"").decode("latin-1"),
                                 server.max_body_bytes)
        req = parse_chat_request(parse_json_body(raw), server.max_tokens_limit)
        header_sid = headers.get(b"x-session-id")
        sid = session_id(header_sid.decode("latin-1") if header_sid is not None else None, req.user)
        sent = [("assistant" if m.role == "assistant" else "user", text_of(m, i))
                for i, m in enumerate(req.messages) if m.role in {"user", "assistant"}]
        manager = self.service.manager
        assert manager is not None
        try:
            reply = await manager.reply(ns, sid, sent, temperature=req.temperature,
                                        max_tokens=req.max_completion_tokens or req.max_tokens)
        except StoreUnavailable as exc:
            log.warning("store unavailable: %s", exc)
            raise APIError(503, "the conversation store is unavailable; try again shortly",
                           code="store_unavailable") from None
        except ReplyDiscarded as exc:
            raise APIError(409, str(exc), param="user", code="session_deleted") from None
        except ReplyError as exc:
            raise APIError(502, str(exc), code="backend_error") from None
        cid = new_id()
        sid_header = (b"x-session-id", sid.encode())
        if req.stream:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                    (b"cache-control", b"no-cache"), sid_header]})
            for chunk in sse_chunks(cid, server.model_name, reply.text, reply.finish_reason):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        extra = {"session": {"id": sid, "memory_version": reply.memory_version, "turns": [t.seq for t in reply.turns]}}
        await _respond(send, 200, json_bytes(completion_body(
            cid, server.model_name, reply.text, reply.prompt_tokens, reply.completion_tokens, reply.finish_reason,
            extra)), [sid_header])


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})

"""The FastAPI app of ``promptweave serve``: an OpenAI-compatible chat endpoint in front of the
memory manager, plus session inspection and deletion. Every error is OpenAI-style JSON."""

from __future__ import annotations

import hmac
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConfigError
from ..memory import ReplyError
from .config import LoadedServeConfig
from .protocol import (APIError, check_session_id, completion_body, new_id, parse_chat_request, parse_json_body,
                       session_id, sse_chunks, text_of)
from .service import ChatService

log = logging.getLogger("promptweave.serve")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_DRAIN_LIMIT = 128 * 1024 * 1024  # read (and drop) at most this much of an oversized body


class Auth:
    """Bearer keys from the environment; each key is its own namespace, named by a hash of the
    key so that the secret is never stored or logged."""

    def __init__(self, keys: list[str] | None) -> None:
        self.keys = [k.encode() for k in keys] if keys is not None else None

    @classmethod
    def from_config(cls, loaded: LoadedServeConfig, host: str) -> Auth:
        env = loaded.config.server.keys_env
        if env is None:
            if host not in _LOOPBACK:
                raise ConfigError(f"binding {host} without API keys would open every conversation to the network; "
                                  "set server.keys_env and export the keys", file=loaded.file, key="server.keys_env")
            return cls(None)
        keys = [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
        if not keys:
            raise ConfigError(f"no API keys: export {env}=key1,key2 (comma-separated), or set server.keys_env: null "
                              "for an unauthenticated loopback-only server", file=loaded.file, key="server.keys_env")
        return cls(keys)

    def namespace(self, request: Request) -> str:
        if self.keys is None:
            return "public"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        given = token.strip().encode()
        for key in self.keys:
            if hmac.compare_digest(given, key):
                return "k_" + hashlib.sha256(key).hexdigest()[:24]
        raise APIError(401, "invalid API key", code="invalid_api_key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 past ``limit`` bytes (the rest is read and dropped so that the client
    sees the answer rather than a reset connection)."""
    declared = request.headers.get("content-length", "")
    too_big = declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_big = True
        if too_big:
            if size > _DRAIN_LIMIT:
                break
            continue
        chunks.append(chunk)
    if too_big:
        raise APIError(413, f"the request body is larger than {limit:,} bytes", code="request_too_large")
    return b"".join(chunks)


def create_app(loaded: LoadedServeConfig, host: str | None = None) -> FastAPI:
    """The app; the service (store, models, memory) opens in its lifespan."""
    cfg = loaded.config
    auth = Auth.from_config(loaded, host or cfg.server.host)
    service = ChatService(loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(title="promptweave serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(APIError(exc.status_code, msg).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(APIError(500, "internal error; see the server log", type_="api_error").body(),
                            status_code=500)

    def manager():  # type: ignore[no-untyped-def]
        assert service.manager is not None
        return service.manager

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        m = manager()
        return {"status": "ok", "model": cfg.server.model_name, "policy": cfg.memory.policy,
                "updates_committed": m.updates_committed,
                "updates_running": sum(1 for t in m._tasks.values() if not t.done()),
                "usage": {name: rt.ledger.to_dict() for name, rt in m.runtimes.items()}}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        auth.namespace(request)
        return {"object": "list", "data": [{"id": cfg.server.model_name, "object": "model", "created": 0,
                                            "owned_by": "promptweave"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        ns = auth.namespace(request)
        req = parse_chat_request(parse_json_body(await read_body(request, cfg.server.max_body_bytes)),
                                 cfg.server.max_tokens_limit)
        sid = session_id(request.headers.get("x-session-id"), req.user)
        sent = [("assistant" if m.role == "assistant" else "user", text_of(m, i))
                for i, m in enumerate(req.messages) if m.role in {"user", "assistant"}]
        try:
            reply = await manager().reply(ns, sid, sent, temperature=req.temperature,
                                          max_tokens=req.max_completion_tokens or req.max_tokens)
        except ReplyError as exc:
            raise APIError(502, str(exc), code="backend_error") from None
        cid = new_id()
        extra = {"session": {"id": sid, "memory_version": reply.memory_version,
                             "turns": [t.seq for t in reply.turns]}}
        if req.stream:
            chunks = sse_chunks(cid, cfg.server.model_name, reply.text, reply.finish_reason)

            async def gen() -> AsyncIterator[bytes]:
                for c in chunks:
                    yield c

            return StreamingResponse(gen(), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", "x-session-id": sid})
        return JSONResponse(completion_body(cid, cfg.server.model_name, reply.text, reply.prompt_tokens,
                                            reply.completion_tokens, reply.finish_reason, extra),
                            headers={"x-session-id": sid})

    def _existing(request: Request, sid: str) -> tuple[str, str]:
        ns = auth.namespace(request)
        check_session_id(sid)
        if manager().store.session(ns, sid) is None:
            raise APIError(404, f"no session '{sid}'", param="session", code="session_not_found")
        return ns, sid

    @app.get("/v1/sessions/{sid}")
    async def get_session(sid: str, request: Request) -> dict[str, Any]:
        ns, sid = _existing(request, sid)
        m = manager()
        state = m.store.session(ns, sid)
        versions = m.store.versions(ns, sid)
        failure = m.failures.get((ns, sid))
        return {"id": sid, "object": "session", "dialogue_session": state.dialogue_no if state else None,
                "turns": [t.to_dict() for t in m.store.turns(ns, sid)],
                "memory": versions[-1].to_dict() if versions else None,
                "versions": [v.to_dict() for v in versions],
                "update_pending": bool(state and state.pending_upto > (versions[-1].turn_to if versions else 0)),
                "last_update_error": failure.error if failure else None}

    @app.delete("/v1/sessions/{sid}")
    async def delete_session(sid: str, request: Request) -> dict[str, Any]:
        ns, sid = _existing(request, sid)
        await manager().forget(ns, sid)
        return {"id": sid, "object": "session.deleted", "deleted": True}

    @app.post("/v1/sessions/{sid}/end")
    async def end_session(sid: str, request: Request) -> dict[str, Any]:
        ns, sid = _existing(request, sid)
        return {"id": sid, "ended": manager().end_session(ns, sid)}

    @app.post("/v1/sessions/{sid}/rollback")
    async def rollback(sid: str, request: Request) -> dict[str, Any]:
        ns, sid = _existing(request, sid)
        data = parse_json_body(await read_body(request, cfg.server.max_body_bytes))
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise APIError(400, "'version': give the memory version to roll back to", param="version")
        try:
            mv = manager().store.rollback(ns, sid, version)
        except KeyError:
            raise APIError(404, f"session '{sid}' has no memory version {version}", param="version") from None
        return {"id": sid, "memory": mv.to_dict()}

    return app

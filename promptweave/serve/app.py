"""The app of ``promptweave serve``: the OpenAI-compatible chat endpoint (:mod:`.chat`, a bare ASGI
handler) in front of FastAPI, which serves models, health, session inspection, deletion, ends and
rollbacks. Every error is OpenAI-style JSON."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..memory import StoreUnavailable
from .auth import Auth, read_limited
from .chat import ChatEndpoint
from .config import LoadedServeConfig
from .protocol import APIError, check_session_id, parse_json_body
from .service import ChatService

log = logging.getLogger("promptweave.serve")


async def read_body(request: Request, limit: int) -> bytes:
    return await read_limited(request.stream(), request.headers.get("content-length", ""), limit)


def create_app(loaded: LoadedServeConfig, host: str | None = None) -> ChatEndpoint:
    """The ASGI app: chat completions on the bare hot path (:mod:`.chat`), the rest on FastAPI;
    the service (store, models, memory) opens in the FastAPI app's lifespan."""
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
    # /v1/sessions/x/ answers 404 JSON like any unknown path, not a redirect to another URL
    app.router.redirect_slashes = False

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return JSONResponse(APIError(503, "the conversation store is unavailable; try again shortly",
                                     code="store_unavailable").body(), status_code=503)

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

    model_card = {"id": cfg.server.model_name, "object": "model", "created": 0, "owned_by": "promptweave"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        auth.namespace_of(request.headers.getlist("authorization"))
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str, request: Request) -> dict[str, Any]:
        """What ``client.models.retrieve(id)`` asks for (it was a 404 for the served model too)."""
        auth.namespace_of(request.headers.getlist("authorization"))
        if model != cfg.server.model_name:
            raise APIError(404, f"no model '{model[:100]}'; this server serves '{cfg.server.model_name}'",
                           param="model", code="model_not_found")
        return model_card

    def _existing(request: Request, sid: str) -> tuple[str, str]:
        ns = auth.namespace_of(request.headers.getlist("authorization"))
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

    return ChatEndpoint(app, cfg, auth, service)

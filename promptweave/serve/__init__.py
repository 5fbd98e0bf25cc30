"""``promptweave serve``: an OpenAI-compatible, memory-keeping chatbot backend."""

from __future__ import annotations

from .config import LoadedServeConfig, ServeConfig, load_serve_config

__all__ = ["LoadedServeConfig", "ServeConfig", "create_app", "load_serve_config"]


def create_app(loaded: LoadedServeConfig, host: str | None = None):  # type: ignore[no-untyped-def]
    """The FastAPI app (imported lazily: fastapi is the ``serve`` extra)."""
    from .app import create_app as _create

    return _create(loaded, host)

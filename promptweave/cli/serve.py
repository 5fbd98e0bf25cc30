"""``promptweave serve CONFIG``: the memory-keeping, OpenAI-compatible chatbot backend."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command()
def serve(
    config: Path = typer.Argument(..., help="serve YAML file (model, memory, store, server)"),
    host: Optional[str] = typer.Option(None, help="bind address (default: server.host, 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, help="port (default: server.port; 0 picks a free one)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="override a config value: key.path=value"),
) -> None:
    """Serve /v1/chat/completions with long-term memory; prints 'READY <base_url>' once listening."""
    from ..errors import MissingDependency, PromptweaveError
    from ..serve import create_app, load_serve_config

    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependency("uvicorn", "serve", exc) from None
    loaded = load_serve_config(config, list(set_ or []))
    srv = loaded.config.server
    bind_host = host or srv.host
    try:
        application = create_app(loaded, bind_host)
    except ImportError as exc:
        raise MissingDependency("fastapi", "serve", exc) from None
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind_host, srv.port if port is None else port))
    except OSError as exc:
        raise PromptweaveError(f"cannot listen on {bind_host}:{port if port is not None else srv.port}: "
                               f"{exc.strerror}; choose another --port") from None
    sock.listen(2048)
    bound = sock.getsockname()[1]
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if not self.should_exit:
                typer.echo(f"READY http://{shown}:{bound}/v1", err=False)

    # proxy_headers off: nothing reads the client address, and trusting X-Forwarded-* by default
    # would only cost a middleware layer per request
    server = _Server(uvicorn.Config(application, log_level="warning", access_log=False, lifespan="on",
                                   proxy_headers=False, timeout_graceful_shutdown=15))
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(1)

"""``promptweave chat CONFIG``: a terminal conversation with the same memory as ``serve``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from . import app

_HELP = "/memory  show the memory · /end  end the session (memory update) · /forget  delete this user · /quit"


@app.command()
def chat(
    config: Path = typer.Argument(..., help="serve YAML file (model, memory, store)"),
    session: str = typer.Option("me", "--session", help="conversation id (resume it later by the same id)"),
    namespace: str = typer.Option("public", help="store namespace ('public' is the one of an unauthenticated serve)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="override a config value: key.path=value"),
) -> None:
    """Chat in the terminal; the memory is kept in the configured store."""
    from ..errors import PromptweaveError
    from ..serve.config import load_serve_config
    from ..serve.protocol import APIError, check_session_id

    try:
        check_session_id(session)
    except APIError as exc:
        raise PromptweaveError(f"--session: {exc.message}") from None
    loaded = load_serve_config(config, list(set_ or []))
    asyncio.run(_loop(loaded, namespace, session))


async def _loop(loaded, ns: str, sid: str) -> None:  # type: ignore[no-untyped-def]
    from rich.panel import Panel
    from rich.text import Text

    from ..memory import ReplyError, StoreUnavailable
    from ..memory.store import check_storable
    from ..serve.service import ChatService
    from ..terminal import console as make_console

    console = make_console()  # replies, ids and errors are text, never markup
    service = ChatService(loaded)
    manager = await service.start()
    console.print(f"session '{sid}' · policy {loaded.config.memory.policy} · {_HELP}", style="dim")
    try:
        while True:
            try:
                line = await asyncio.to_thread(console.input, Text.assemble(("you", "bold cyan"), " › "))
            except EOFError:
                break
            line = line.strip()
            if not line:
                continue
            if line in {"/quit", "/exit"}:
                break
            if line == "/help":
                console.print(_HELP)
            elif line == "/memory":
                mv = manager.store.latest_memory(ns, sid)
                running = (ns, sid) in manager._tasks and not manager._tasks[(ns, sid)].done()
                title = f"memory v{mv.version} (turns {mv.turn_from}-{mv.turn_to})" if mv else "memory: none yet"
                console.print(Panel(Text(mv.text if mv else "none"), title=title,
                                    subtitle="an update is running" if running else None))
            elif line == "/end":
                if manager.end_session(ns, sid):
                    with console.status("updating the memory…"):
                        await manager.drain()  # the user asked for it; no reply is waiting
                    failure = manager.failures.get((ns, sid))
                    mv = manager.store.latest_memory(ns, sid)
                    if failure:
                        console.print(Text.assemble(("memory update failed", "red"),
                                                    f": {failure.error} (it is retried later)"))
                    else:
                        console.print(f"session ended; memory v{mv.version if mv else 0}", style="dim")
                else:
                    console.print("nothing to end: no turns since the last session end", style="dim")
            elif line == "/forget":
                await manager.forget(ns, sid)
                console.print("forgotten: every turn and memory version of this session is deleted", style="dim")
            elif line.startswith("/"):
                console.print(Text.assemble(("unknown command", "red"), f" {line}; {_HELP}"))
            else:
                try:
                    check_storable(line, "your message")  # e.g. bytes the terminal could not decode
                except ValueError as exc:
                    console.print(Text.assemble(("error", "red"), f": {exc}; nothing was sent"))
                    continue
                try:
                    reply = await manager.reply(ns, sid, [("user", line)], dedup=False)
                except ReplyError as exc:
                    console.print(Text.assemble(("error", "red"), f": {exc} (your turn is kept)"))
                    continue
                except StoreUnavailable as exc:
                    console.print(Text.assemble(("error", "red"), f": {exc}"))
                    continue
                console.print(Text.assemble(("bot", "bold green"), " › ", reply.text))
    finally:
        await service.close()

"""The ``promptweave`` command. Each sub-command lives in its own module and registers on ``app``.

Typer runs in its standalone mode, so usage errors (a missing argument, an unknown option, a
mistyped command) print typer's own usage message and exit 2 on every typer version we allow;
:func:`main` adds what typer does not know: our one-line errors, Ctrl-C, and the supervisor that
turns a native crash during ``run`` into one line and a resumable run (:mod:`.supervise`).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import PromptweaveError
from ..secrets import scrub
from .supervise import invocation, should_supervise, supervise


class Interrupted(PromptweaveError):
    """Ctrl-C: printed as is (it starts with "interrupted"), exit 130."""

    exit_code = 130


class _Commands(TyperGroup):
    """Typer's group plus "did you mean" for a mistyped command, and Ctrl-C as :class:`Interrupted`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            if close:
                ctx.fail(f"No such command '{name}'. Did you mean '{close[0]}'?")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # typer/click would print "Aborted!" (older) or nothing (newer) and exit 1 or 130
            raise Interrupted("interrupted") from None


app = typer.Typer(
    name="promptweave",
    cls=_Commands,
    help="Declarative LLM pipelines: translate and evaluate MT, meta-evaluate judges, serve a chatbot with long-term memory, read high-resolution images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"promptweave {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", help="print the version and exit",
                                 callback=_print_version, is_eager=True),
) -> None:
    """Declarative LLM pipelines: translate and evaluate MT, meta-evaluate judges, serve a chatbot with long-term memory, read high-resolution images."""


# sub-command modules; each does ``@app.command()`` on import. Imported by main(), after the
# supervisor of ``run`` has branched off: it needs none of them.
_COMMANDS = ["run", "evaluate", "meta", "templates", "report", "compare", "serve", "chat"]


def load_commands() -> None:
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}")


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit; no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _wants_help(args: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def main(argv: list[str] | None = None) -> None:
    """The console script: ``promptweave ARGS``."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args[:1] == ["run"] and not _wants_help(args) and should_supervise():
        sys.exit(supervise(args))
    try:
        load_commands()
        # the name the user typed, also in a supervised child (whose argv[0] is python's -m)
        app(args=args, prog_name=invocation())
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except PromptweaveError as exc:
        typer.echo(f"error: {scrub(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # before a command started (imports, argument parsing)
        typer.echo("interrupted", err=True)
        sys.exit(130)

"""The ``promptweave`` command. Each sub-command lives in its own module and registers on ``app``."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from ..errors import PromptweaveError

app = typer.Typer(
    name="promptweave",
    help="Declarative LLM pipelines for machine translation: run, evaluate, meta-evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# sub-command modules; each does ``@app.command()`` on import
_COMMANDS = ["run", "evaluate", "meta", "templates", "serve", "chat"]
for _name in _COMMANDS:
    importlib.import_module(f"{__name__}.{_name}")


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit; no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # a command's typer.Exit(n) comes back as n here
            sys.exit(code)
    except PromptweaveError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted; finished rows are saved, run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise

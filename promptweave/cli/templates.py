"""``promptweave templates list | show NAME``."""

from __future__ import annotations

import typer
from rich.table import Table

from .. import terminal
from . import app

templates_app = typer.Typer(help="List and show built-in prompt templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


@templates_app.command("list")
def list_templates() -> None:
    """List built-in templates with their descriptions."""
    from ..prompts import builtin_names, get_template

    table = Table("name", "variables", "description")
    for name in builtin_names():
        tpl = get_template(name)
        desc = " ".join(tpl.description.split())
        table.add_row(name, ", ".join(tpl.variables), desc[:100] + ("…" if len(desc) > 100 else ""))
    terminal.console().print(table)


@templates_app.command("show")
def show(name: str = typer.Argument(..., help="built-in name or path to a template file")) -> None:
    """Print a template file as it is stored."""
    from ..prompts import get_template

    tpl = get_template(name)
    typer.echo(f"# {tpl.path} (sha256 {tpl.sha256[:12]})")
    typer.echo(tpl.source_text.rstrip())

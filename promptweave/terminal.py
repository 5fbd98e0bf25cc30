"""The one way promptweave makes a rich console: text is never read as markup.

Names, paths, system names, metric names and model replies come from users' files and models;
with rich's default markup, a ``[/x]`` in any of them was a ``MarkupError`` traceback (after a
run had finished) and a ``[bold]`` restyled the terminal. Styles are given as ``style=`` or
:class:`rich.text.Text` spans instead.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def console(*, wide_when_piped: bool = False, **kwargs: Any) -> Console:
    """A console with markup and highlighting off. ``wide_when_piped``: 200 columns when the output
    is not a terminal, so a table piped to a file keeps long names whole."""
    kwargs.setdefault("markup", False)
    kwargs.setdefault("highlight", False)
    out = Console(**kwargs)
    if wide_when_piped and not out.is_terminal and "width" not in kwargs:
        out = Console(width=200, **kwargs)
    return out

"""Whole-number tuning knobs read from the environment (``PROMPTWEAVE_REPORT_ROWS`` and the like).

A bare ``int(os.environ[...])`` at import turned a typo in one variable into a traceback from
every command that imported the module; :func:`env_int` says which variable and what it takes.
"""

from __future__ import annotations

import os

from .errors import PromptweaveError


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number of at least ``minimum`` (``default`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise PromptweaveError(f"{name}={text[:40]!r}: not a whole number >= {minimum}; "
                               f"unset it for the default ({default})")
    return value

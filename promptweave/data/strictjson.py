"""Strict JSON for data files: what Python's ``json`` accepts but would silently mean something
else is an error here.

* duplicate keys in one object (``json`` keeps the last one);
* ``NaN``, ``Infinity``, ``-Infinity`` and numbers that overflow to infinity (``1e999``): they are
  not JSON, would reach a prompt as the text ``nan`` and ``results.jsonl`` as non-standard JSON;
* integers over 4300 digits (Python refuses to convert them) and nesting deeper than
  :data:`MAX_DEPTH` (deeper documents raise ``RecursionError`` in ``json`` and in every writer).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class StrictJSONError(ValueError):
    """The reason a text is not strict JSON; ``colno`` when known."""

    def __init__(self, message: str, colno: int | None = None) -> None:
        super().__init__(message)
        self.colno = colno


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"duplicate key '{key[:60]}' in one object; keep only one")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number; write null for a missing value")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:40]} is too large (it would be infinity)")
    return value


def _depth_ok(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def loads(text: str) -> Any:
    """Parse ``text``; :class:`StrictJSONError` with a short reason on anything not strict JSON."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"invalid JSON ({exc.msg} at column {exc.colno})", exc.colno) from None
    except RecursionError:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise StrictJSONError(f"invalid JSON ({' '.join(str(exc).split())[:120]})") from None
    if not _depth_ok(value):
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def is_finite_json(value: Any) -> bool:
    """True when ``value`` holds no NaN or infinite float anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True

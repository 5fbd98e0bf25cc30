"""One small registry type serves every extension point (backends, steps, metrics).

Built-ins register by ``"module:attr"`` string so that heavy dependencies load only when
the name is used; third parties plug in through a Python entry-point group.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A registry lookup missed; the message carries the close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def load_object(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def suggest(name: str, choices: list[str]) -> str:
    """``" (did you mean 'x'?)"`` or ``""``."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T | str] = {}
        self._entry_points_loaded = False

    def register(self, name: str, obj: T | str | None = None) -> Any:
        """``reg.register("x", "mod:attr")``, ``reg.register("x", obj)`` or as a decorator."""
        if obj is not None:
            self._items[name] = obj
            return obj

        def deco(o: T) -> T:
            self._items[name] = o
            return o

        return deco

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self.group:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            self._items.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{suggest(name, list(self._items))}; "
                f"known: {', '.join(sorted(self._items))}"
            )
        item = self._items[name]
        if isinstance(item, str):
            item = load_object(item)
            self._items[name] = item
        return item  # type: ignore[return-value]

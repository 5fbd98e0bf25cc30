"""The Jinja2 sandbox templates render in, bounded in size, work and time.

Jinja's immutable sandbox stops access to Python internals but not runaway work: a format width
(``'{0:>99999999}'.format``), ``'%99999999d' % 1``, ``center``/``indent`` widths, nested ``range``
loops, ``lipsum(10**6)`` or a string doubled with ``~`` in a loop run for minutes or eat gigabytes.
:class:`BoundedSandbox` bounds these at the root:

* **sizes** are checked *before* anything is built: every call of a string method or filter that
  takes a width or count, every ``*``, ``+``, ``%`` and ``**``, every ``~`` (rewritten into a
  checked call at compile time) and the rendered output itself;
* **work**: each ``{% for %}`` is rewritten to iterate through a counter, and every call, macro
  call and ``range`` is counted against a per-render budget;
* **time**: the same counters check a per-render deadline, so no loop or recursion outlives it.

A limit that is hit raises :class:`LimitError`, whose message names the limit.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from functools import update_wrapper
from typing import Any, Callable, Iterable, Iterator

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

MAX_REPEAT = 1_000_000  # characters or items a ``*`` may build; bits a ``**`` or int ``*`` may build
MAX_STRING = 8_000_000  # characters (or list items) any one value may have, the rendered text included
MAX_WIDTH = 100_000  # a format width or precision, a center/indent/ljust width
MAX_STEPS = 1_000_000  # loop iterations + calls + range items per render
MAX_SECONDS = 2.0  # wall time per render


class LimitError(SecurityError):
    """A template exceeded one of the sandbox's bounds; the message says which."""


class _Budget:
    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.steps = 0

    def charge(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise LimitError(f"more than {MAX_STEPS:,} loop iterations, calls and range items in one render")
        if self.steps % 256 < n or n > 256:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitError(f"rendering took longer than {MAX_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("promptweave_render_budget", default=None)


def _charge(n: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.charge(n)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict, set, frozenset, bytes)) else 0


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > MAX_STRING:
        raise LimitError(f"{what} would build a value of more than {MAX_STRING:,} characters or items")
    return value


def _check_width(n: Any, what: str) -> None:
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_WIDTH:
        raise LimitError(f"{what} width {n:,} is over the limit of {MAX_WIDTH:,}")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_percent(fmt: str) -> None:
    """Widths in a ``%`` format string; ``*`` widths (taken from the arguments) are refused."""
    for m in _PERCENT.finditer(fmt):
        for group in m.groups():
            if group == "*":
                raise LimitError("'%' formats with a '*' width are not allowed; write the width as a number")
            if group is not None:
                _check_width(int(group), "'%' format")


_SPEC_NUMBER = re.compile(r"\d+")


def _check_format_spec(fmt: str) -> None:
    """Widths and precisions in a ``str.format`` string, nested fields included."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, field, spec, _ in parsed:
        if field is None or not spec:
            continue
        if "{" in spec:
            raise LimitError("format widths taken from arguments ('{0:{1}}') are not allowed; write the width")
        for number in _SPEC_NUMBER.findall(spec):
            _check_width(int(number), "format")


def _bounded_range(*args: Any) -> range:
    rng = range(*args)
    if len(rng) > MAX_STEPS:
        raise LimitError(f"range of {len(rng):,} items is over the limit of {MAX_STEPS:,}")
    _charge(len(rng))
    return rng


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    for value, limit, name in ((n, 100, "n"), (min, 1000, "min"), (max, 1000, "max")):
        if not isinstance(value, int) or value > limit:
            raise LimitError(f"lipsum {name}={value!r} is over the limit of {limit}")
    _charge(n * max)
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _predict_replace(s: str, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(old, str) or not isinstance(new, str) or len(new) <= len(old):
        return
    hits = len(s) + 1 if old == "" else s.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(s) + hits * (len(new) - len(old)) > MAX_STRING:
        raise LimitError(f"replace would build a string of more than {MAX_STRING:,} characters")


def _check_str_method(s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Pre-checks of string methods that can grow a string; returns the (possibly listed) args."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(args[0] if args else kwargs.get("width"), name)
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and len(s) + s.count("\t") * size > MAX_STRING:
            raise LimitError(f"expandtabs would build a string of more than {MAX_STRING:,} characters")
    elif name == "replace" and len(args) >= 2:
        _predict_replace(s, *args[:3])
    elif name == "join" and args and isinstance(args[0], str):
        if len(args[0]) + max(len(args[0]) - 1, 0) * len(s) > MAX_STRING:
            raise LimitError(f"join would build a string of more than {MAX_STRING:,} characters")
    elif name == "join" and args:
        items = _listed(args[0])
        _check_join(s, items)
        return (items, *args[1:])
    return args


def _listed(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    items = []
    for item in value:
        items.append(item)
        _charge()
    return items


def _check_join(sep: str, items: list[Any]) -> None:
    total = len(sep) * max(len(items) - 1, 0) + sum(_size(x) for x in items)
    if total > MAX_STRING:
        raise LimitError(f"join would build a string of more than {MAX_STRING:,} characters")


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter with the same pre-checks as the string methods and a size check of its result."""

    skip = 1 if _PassArg.from_obj(func) is not None else 0  # the environment/context comes first

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _charge()
        values = list(args[skip:])
        value = values[0] if values else None
        rest = values[1:]
        if name == "center":
            _check_width(rest[0] if rest else kwargs.get("width"), "center")
        elif name == "indent":
            width = rest[0] if rest else kwargs.get("width", 4)
            w = len(width) if isinstance(width, str) else width
            _check_width(w, "indent")
            if isinstance(value, str) and isinstance(w, int) and len(value) + (value.count("\n") + 1) * w > MAX_STRING:
                raise LimitError(f"indent would build a string of more than {MAX_STRING:,} characters")
        elif name == "format" and isinstance(value, str):
            _check_percent(value)
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _predict_replace(value, *rest[:3])
        elif name in ("batch", "slice"):
            _check_width(rest[0] if rest else None, name)
        elif name == "wordwrap":
            wrap = kwargs.get("wrapstring", rest[2] if len(rest) > 2 else None)
            width = rest[0] if rest else kwargs.get("width", 79)
            if isinstance(value, str) and isinstance(wrap, str) and isinstance(width, int) \
                    and len(value) + len(wrap) * (len(value) // max(width, 1) + 1) > MAX_STRING:
                raise LimitError(f"wordwrap would build a string of more than {MAX_STRING:,} characters")
        elif name == "join" and isinstance(value, str):
            sep = rest[0] if rest else kwargs.get("d", "")
            if isinstance(sep, str) and len(value) + max(len(value) - 1, 0) * len(sep) > MAX_STRING:
                raise LimitError(f"join would build a string of more than {MAX_STRING:,} characters")
        elif name == "join" and value is not None:
            items = _listed(value)
            sep = rest[0] if rest else kwargs.get("d", "")
            if isinstance(sep, str):
                _check_join(sep, items)
            args = tuple(items if a is value else a for a in args)
        return _check_size(func(*args, **kwargs), f"filter '{name}'")

    return update_wrapper(guarded, func)


class _Rewrite(NodeTransformer):
    """``{% for x in y %}`` -> ``for x in environment.pw_iter(y)``; ``a ~ b`` -> ``environment.pw_concat(a, b)``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - NodeTransformer's naming
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("pw_iter"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("pw_concat"), list(node.nodes), [], None, None,
                          lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounds on size, work and time (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    # compile-time rewrite of loops and ``~``
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Rewrite().visit(super()._parse(source, name, filename))  # type: ignore[no-any-return]

    @staticmethod
    def pw_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _charge()
            yield item

    @staticmethod
    def pw_concat(*parts: Any) -> str:
        texts = [p if isinstance(p, str) else str(p) for p in parts]
        _check_size(texts, "'~'")
        if sum(len(t) for t in texts) > MAX_STRING:
            raise LimitError(f"'~' would build a string of more than {MAX_STRING:,} characters")
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _charge()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise LimitError(f"'*' would build more than {MAX_REPEAT:,} items")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_REPEAT:
                raise LimitError(f"'*' would build a number of more than {MAX_REPEAT:,} bits")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * max(abs(left).bit_length(), 1) > MAX_REPEAT:
                raise LimitError(f"'**' would build a number of more than {MAX_REPEAT:,} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_STRING:
                raise LimitError(f"'+' would build a value of more than {MAX_STRING:,} characters or items")
        elif operator == "%" and isinstance(left, str):
            _check_percent(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _charge()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and not isinstance(__obj, type):
            args = _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(fmt)
            return _check_size(wrapped(*args, **kwargs), "format")  # type: ignore[misc]

        return update_wrapper(checked, wrapped)

    def render_bounded(self, template: Any, variables: dict[str, Any]) -> str:
        """Render ``template`` within a fresh budget; the output is checked chunk by chunk."""
        token = _budget.set(_Budget())
        try:
            out: list[str] = []
            total = 0
            for chunk in template.root_render_func(template.new_context(variables)):
                total += len(chunk)
                if total > MAX_STRING:
                    raise LimitError(f"the rendered text would be longer than {MAX_STRING:,} characters")
                out.append(chunk)
                _charge()
            return "".join(out)
        finally:
            _budget.reset(token)

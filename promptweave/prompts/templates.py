"""Prompt templates are data: YAML files of chat messages rendered by sandboxed Jinja2.

A template file::

    name: tsp
    description: Task-specific system prompt (Peng et al. 2023)
    variables: [source, tgt_lang_name]          # optional, checked before rendering
    messages:
      - role: system
        content: You are a machine translation system.
      - for: ex in examples                     # optional: repeat turns per item of a list
        messages:
          - {role: user, content: "{{ ex.source }}"}
          - {role: assistant, content: "{{ ex.target }}"}
      - role: user
        content: "Please provide the {{ tgt_lang_name }} translation for the following sentence: {{ source }}"

Undefined variables are errors (``StrictUndefined``); the sandbox refuses attribute access to
Python internals such as ``''.__class__.__mro__`` and bounds size, work and time
(:mod:`promptweave.prompts.sandbox`). Template files are read like pipeline files: duplicate keys
(two ``messages:``) are errors naming file:line, and ``${VAR}`` is *not* interpolated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError, UndefinedError, nodes
from jinja2.sandbox import SecurityError

from ..errors import ConfigError, DataError, TemplateError
from ..models.base import Message
from .sandbox import MAX_REPEAT, BoundedSandbox, LimitError

BUILTIN_DIR = Path(__file__).parent / "templates"
_ROLES = {"system", "user", "assistant"}
_FOR = re.compile(r"^\s*([A-Za-z_]\w*)\s+in\s+([A-Za-z_][\w.]*)\s*$")

_MAX_SIZE = MAX_REPEAT  # kept for callers of the old name


_env = BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


@dataclass
class PromptTemplate:
    name: str
    messages: list[dict[str, Any]]
    description: str = ""
    variables: list[str] = field(default_factory=list)
    path: str = "<inline>"
    source_text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode("utf-8")).hexdigest()

    def render(self, variables: dict[str, Any]) -> list[Message]:
        """Render to chat messages; a missing variable raises :class:`TemplateError`."""
        missing = [v for v in self.variables if v not in variables or variables[v] is None]
        if missing:
            raise TemplateError(
                f"template '{self.name}' ({self.path}) needs variable(s) {', '.join(missing)}{_lang_hint(missing)}; "
                f"available: {', '.join(sorted(k for k, v in variables.items() if v is not None)) or 'none'}"
            )
        out: list[Message] = []
        self._render_into(self.messages, dict(variables), out)
        return out

    def _render_into(self, items: list[dict[str, Any]], scope: dict[str, Any], out: list[Message]) -> None:
        for item in items:
            if "for" in item:
                var, seq_name = _FOR.match(item["for"]).groups()  # type: ignore[union-attr]
                seq = _lookup(scope, seq_name, self)
                for value in seq or []:
                    self._render_into(item["messages"], {**scope, var: value}, out)
                continue
            text = self._render_text(item["content"], scope)
            if item.get("skip_empty") and not text.strip():
                continue
            out.append(Message(role=item["role"], content=text))

    def _render_text(self, content: str, scope: dict[str, Any]) -> str:
        try:
            return _env.render_bounded(_compile(content), scope)
        except UndefinedError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}): {exc}{_lang_hint([str(exc)])}; "
                                f"available: {', '.join(sorted(scope))}") from None
        except LimitError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}) hit a sandbox limit: {exc}") from None
        except RecursionError:
            raise TemplateError(f"template '{self.name}' ({self.path}) failed: recursion too deep") from None
        except MemoryError:
            raise TemplateError(f"template '{self.name}' ({self.path}) failed: out of memory") from None
        except SecurityError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}) is not allowed: {exc}") from None
        except JinjaTemplateError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. range() past the sandbox's limit, 1/0
            raise TemplateError(f"template '{self.name}' ({self.path}) failed: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}") from None


def _lang_hint(names: list[str]) -> str:
    if any("src_lang" in n for n in names) or any("tgt_lang" in n for n in names):
        return " (set data.src_lang and data.tgt_lang, or src_lang/tgt_lang fields in every row)"
    return ""


def _lookup(scope: dict[str, Any], dotted: str, tpl: PromptTemplate) -> Any:
    head, *rest = dotted.split(".")
    if head not in scope:
        raise TemplateError(f"template '{tpl.name}' ({tpl.path}): loop variable '{head}' is undefined; "
                            f"available: {', '.join(sorted(scope))}")
    value = scope[head]
    for part in rest:
        if part.startswith("_"):  # the same rule as the sandbox: no private attributes
            raise TemplateError(f"template '{tpl.name}' ({tpl.path}): loop over '{dotted}' is not allowed")
        try:
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        except (KeyError, AttributeError):
            raise TemplateError(f"template '{tpl.name}' ({tpl.path}): loop variable '{dotted}' is undefined") from None
    if value is not None and not isinstance(value, (list, tuple, dict)):
        raise TemplateError(f"template '{tpl.name}' ({tpl.path}): '{dotted}' is not a list to loop over "
                            f"(got {type(value).__name__})")
    return value


_compiled: dict[str, Any] = {}


def _compile(text: str) -> Any:
    tpl = _compiled.get(text)
    if tpl is None:
        tpl = _compiled[text] = _env.from_string(text)
    return tpl


def _validate_messages(items: Any, where: str) -> None:
    if not isinstance(items, list) or not items:
        raise TemplateError(f"{where}: 'messages' must be a non-empty list of {{role, content}} entries")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TemplateError(f"{where}: messages[{i}] must be a mapping with role and content")
        if "for" in item:
            if not isinstance(item["for"], str) or not _FOR.match(item["for"]):
                raise TemplateError(f"{where}: messages[{i}].for must read 'NAME in LIST', got {item['for']!r}")
            _validate_messages(item.get("messages"), f"{where}: messages[{i}]")
            continue
        if item.get("role") not in _ROLES:
            raise TemplateError(f"{where}: messages[{i}].role must be one of system, user, assistant; "
                                f"got {item.get('role')!r}")
        if not isinstance(item.get("content"), str):
            raise TemplateError(f"{where}: messages[{i}].content must be text")
        unknown = set(item) - {"role", "content", "skip_empty"}
        if unknown:
            raise TemplateError(f"{where}: messages[{i}] has unknown key(s) {', '.join(sorted(unknown))}")
        try:
            _compile(item["content"])
            reads_files = _env.parse(item["content"]).find_all((nodes.Include, nodes.Import, nodes.FromImport,
                                                                 nodes.Extends))
        except JinjaTemplateError as exc:
            raise TemplateError(f"{where}: messages[{i}].content is not a valid Jinja2 template: {exc}") from None
        if next(iter(reads_files), None) is not None:
            raise TemplateError(f"{where}: messages[{i}].content uses include/import/extends, which are not allowed: "
                                "a template cannot read other files; use 'for:' turns or variables instead")


def parse_template(text: str, path: str = "<inline>", name: str | None = None) -> PromptTemplate:
    from ..yamlio import LocatedYAML

    try:
        loc = LocatedYAML(text, path, interpolate=False)
    except ConfigError as exc:
        raise TemplateError(str(exc)) from None
    data = loc.data

    def at(*key: Any) -> str:
        line = loc.line_of(key)
        return f"{path}:{line}" if line else path

    if isinstance(data, list):  # a bare list of messages is a template too
        data = {"messages": data}
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: a template file must be a mapping with 'messages'")
    known = {"name", "description", "variables", "messages", "meta"}
    unknown = set(data) - known
    if unknown:
        first = sorted(unknown, key=str)[0]
        raise TemplateError(f"{at(first)}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"allowed: {', '.join(sorted(known))}")
    for key, kind in (("name", str), ("description", str), ("variables", list), ("meta", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise TemplateError(f"{at(key)}: '{key}' must be {'a list' if kind is list else 'a mapping' if kind is dict else 'text'}")
    if not all(isinstance(v, str) for v in data.get("variables") or []):
        raise TemplateError(f"{at('variables')}: 'variables' must be a list of names")
    try:
        _validate_messages(data.get("messages"), path)
    except TemplateError as exc:
        # name the line of the messages entry the error is about
        m = re.match(rf"{re.escape(path)}: (?:messages\[(\d+)\])?", str(exc))
        idx = m.group(1) if m else None
        line = loc.line_of(("messages", int(idx)) if idx is not None else ("messages",))
        if line and m:
            raise TemplateError(f"{path}:{line}:" + str(exc)[len(path) + 1:]) from None
        raise
    return PromptTemplate(
        name=name or data.get("name") or Path(path).stem,
        messages=data["messages"],
        description=str(data.get("description", "")).strip(),
        variables=list(data.get("variables") or []),
        path=path,
        source_text=text,
        meta=dict(data.get("meta") or {}),
    )


def load_template_file(path: str | Path, name: str | None = None) -> PromptTemplate:
    from ..data.files import read_bytes

    p = Path(path)
    try:
        raw = read_bytes(p, "template file")
    except DataError as exc:
        raise TemplateError(str(exc)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TemplateError(f"{p}:{line}: not valid UTF-8; save the template as UTF-8") from None
    return parse_template(text, str(p), name)

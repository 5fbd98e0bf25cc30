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
Python internals such as ``''.__class__.__mro__``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import TemplateError
from ..models.base import Message

BUILTIN_DIR = Path(__file__).parent / "templates"
_ROLES = {"system", "user", "assistant"}
_FOR = re.compile(r"^\s*([A-Za-z_]\w*)\s+in\s+([A-Za-z_][\w.]*)\s*$")

_MAX_SIZE = 1_000_000  # characters or items a ``*`` may build; bits a ``**`` may build


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on ``*`` and ``**``: ``'x' * 10**12`` or
    ``2 ** (2 ** 40)`` would otherwise exhaust memory or CPU before any error is raised."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_SIZE:
                    raise SecurityError(f"'*' would build more than {_MAX_SIZE:,} items")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * max(abs(left).bit_length(), 1) > _MAX_SIZE:
                raise SecurityError(f"'**' would build a number of more than {_MAX_SIZE:,} bits")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


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
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise TemplateError(
                f"template '{self.name}' ({self.path}) needs variable(s) {', '.join(missing)}; "
                f"available: {', '.join(sorted(variables)) or 'none'}"
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
            return _compile(content).render(**scope)
        except UndefinedError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}): {exc}; "
                                f"available: {', '.join(sorted(scope))}") from None
        except SecurityError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}) is not allowed: {exc}") from None
        except JinjaTemplateError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. range() past the sandbox's limit, 1/0
            raise TemplateError(f"template '{self.name}' ({self.path}) failed: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}") from None


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(data, list):  # a bare list of messages is a template too
        data = {"messages": data}
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: a template file must be a mapping with 'messages'")
    known = {"name", "description", "variables", "messages", "meta"}
    unknown = set(data) - known
    if unknown:
        raise TemplateError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(known))}")
    _validate_messages(data.get("messages"), path)
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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"template file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template file {p} cannot be read: {exc}") from None
    return parse_template(text, str(p), name)

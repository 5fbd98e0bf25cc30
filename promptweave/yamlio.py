"""YAML loading that remembers where each key came from, so errors can name file:line.

Every YAML text the package reads (pipeline files, templates, ``--set`` values, ``--option``
values) goes through :class:`LocatedYAML`: duplicate keys are errors, tags other than the plain
ones are refused, aliases cannot expand past :attr:`LocatedYAML.MAX_VALUES` values (a "billion
laughs" bomb stops at once), and ``<<:`` merge keys work as in YAML 1.1 (explicit keys win).
``${VAR}`` interpolation is on for pipeline files only; each interpolated value remembers the
text it came from so that the manifest can record ``${VAR}`` instead of the value.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .errors import ConfigError

Path_ = tuple[Any, ...]
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def fmt_path(path: Path_) -> str:
    """``('steps', 0, 'translate', 'prompt')`` -> ``steps[0].translate.prompt``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class LocatedYAML:
    """Parsed YAML data plus the 1-based line of every mapping key and sequence item."""

    #: values a file may expand to; aliases (&a / *a) can nest into a "billion laughs" bomb
    MAX_VALUES = 100_000

    def __init__(self, text: str, file: str, *, interpolate: bool = True, line_offset: int = 0) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        #: path -> the text before ``${VAR}`` interpolation, for every value that used the environment
        self.interpolated: dict[Path_, str] = {}
        #: variable name -> the value taken from the environment
        self.env_used: dict[str, str] = {}
        self._interpolate_env = interpolate
        self._offset = line_offset
        self._values = 0
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = self._build(node, ()) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"invalid YAML: {' '.join(str(problem).split())[:200]}; check indentation and quoting",
                              file=file, line=mark.line + 1 + line_offset if mark else None) from None
        except RecursionError:
            raise ConfigError("invalid YAML: nested too deeply", file=file) from None

    def _build(self, node: yaml.Node, path: Path_) -> Any:
        self._values += 1
        if self._values > self.MAX_VALUES:
            raise ConfigError(f"the file expands to more than {self.MAX_VALUES:,} values; "
                              "are aliases (*name) nested into a YAML bomb?",
                              file=self.file, line=self._line(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # a safe loader never builds such objects, but neither should they turn silently into lists
            raise ConfigError(f"the YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed here; "
                              "remove it", file=self.file, line=self._line(node), key=fmt_path(path) or None)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            merged: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    self._merge(value_node, path, merged, self._line(key_node))
                    continue
                key = self._scalar(key_node)
                if isinstance(key, (dict, list)):
                    raise ConfigError("mapping keys must be plain text", file=self.file,
                                      line=self._line(key_node), key=fmt_path(path))
                if key in out:
                    raise ConfigError(f"duplicate key '{key}'; keep only one", file=self.file,
                                      line=self._line(key_node), key=fmt_path(path + (key,)))
                self.lines[path + (key,)] = self._line(key_node)
                out[key] = self._build(value_node, path + (key,))
            for key, value in merged.items():  # explicit keys win over merged ones (YAML 1.1)
                out.setdefault(key, value)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[path + (i,)] = self._line(item)
                items.append(self._build(item, path + (i,)))
            return items
        value = self._scalar(node)
        if isinstance(value, str) and "${" in value and self._interpolate_env:
            done = self._interpolate(value, path, self._line(node))
            if done != value:
                self.interpolated[path] = value
            value = done
        return value

    def _line(self, node: yaml.Node) -> int:
        return node.start_mark.line + 1 + self._offset

    def _merge(self, value_node: yaml.Node, path: Path_, into: dict[Any, Any], line: int) -> None:
        """``<<: *base`` or ``<<: [*a, *b]``: the keys of the mappings, earlier ones winning."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                raise ConfigError("a merge key '<<' takes a mapping or a list of mappings, e.g. <<: *defaults",
                                  file=self.file, line=line, key=fmt_path(path) or None)
            built = self._build(src, path)
            for key, value in built.items():
                into.setdefault(key, value)

    @staticmethod
    def _scalar(node: yaml.Node) -> Any:
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        finally:
            loader.dispose()

    def _interpolate(self, value: str, path: Path_, line: int) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                self.env_used[name] = os.environ[name]
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set; export it or write ${{{name}:-default}}",
                              file=self.file, line=line, key=fmt_path(path))
        return _ENV.sub(sub, value)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``--set a.b.0.c=value`` (value parsed as YAML) to nested data in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY.PATH=VALUE, got '{assignment}'")
    dotted, _, raw = assignment.partition("=")
    value = load_value(raw, f"--set {dotted.strip()}")
    parts: list[Any] = [int(p) if p.isdigit() else p for p in dotted.strip().split(".")]
    if not dotted.strip() or any(p == "" for p in parts):
        raise ConfigError(f"--set expects KEY.PATH=VALUE with a key before '=', got '{assignment}'")
    cur: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(cur, list):
            if not isinstance(part, int) or part >= len(cur):
                raise ConfigError(f"--set {dotted}: index {part} is out of range")
            cur = cur[part]
            continue
        if part not in cur or cur[part] is None:
            cur[part] = [] if isinstance(nxt, int) else {}
        cur = cur[part]
    last = parts[-1]
    if isinstance(cur, list):
        if not isinstance(last, int) or last >= len(cur):
            raise ConfigError(f"--set {dotted}: index {last} is out of range")
        cur[last] = value
    elif isinstance(cur, dict):
        cur[last] = value
    else:
        raise ConfigError(f"--set {dotted}: '{fmt_path(tuple(parts[:-1]))}' is not a mapping")


def load_value(raw: str, what: str) -> Any:
    """A YAML value given on the command line (``--set``, ``--option``), with the same bounds as
    files (aliases, tags, duplicate keys); text that is not valid YAML stays text."""
    if not raw.strip():
        return ""
    try:
        return LocatedYAML(raw, what, interpolate=False).data
    except ConfigError as exc:
        if exc.detail.startswith("invalid YAML"):
            return raw
        raise ConfigError(f"{what}: {exc.detail}") from None

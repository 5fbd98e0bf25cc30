"""Prompt templates: built-ins shipped as YAML files, plus any file a user points at."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import TemplateError
from ..registry import suggest
from .templates import BUILTIN_DIR, PromptTemplate, load_template_file, parse_template


def builtin_names() -> list[str]:
    """Built-in template names: the file path under ``templates/`` without ``.yaml``
    (``tsp``, ``judges/gemba-mqm``, ...)."""
    return sorted(p.relative_to(BUILTIN_DIR).with_suffix("").as_posix()
                  for p in BUILTIN_DIR.rglob("*.yaml"))


_cache: dict[str, PromptTemplate] = {}


def get_template(ref: str, base_dir: str | Path | None = None) -> PromptTemplate:
    """A built-in name, or a path to a template file (relative paths resolve against
    ``base_dir``, the directory of the pipeline file)."""
    key = f"{base_dir}|{ref}|{_content_hash(ref, base_dir)}"  # an edited file is read again
    if key in _cache:
        return _cache[key]
    builtin = BUILTIN_DIR / f"{ref}.yaml"
    if builtin.is_file():
        tpl = load_template_file(builtin, name=ref)
    else:
        p = Path(ref)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if ref.endswith((".yaml", ".yml", ".json")) or p.exists():  # not is_file: a FIFO gets a clear error
            tpl = load_template_file(p)
        else:
            raise TemplateError(f"unknown template '{ref}'{suggest(ref, builtin_names())}; "
                                f"use a built-in name (promptweave templates list) or a path to a .yaml file")
    _cache[key] = tpl
    return tpl


def _content_hash(ref: str, base_dir: str | Path | None) -> str:
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
    except OSError:
        return ""


__all__ = ["PromptTemplate", "builtin_names", "get_template", "load_template_file", "parse_template"]

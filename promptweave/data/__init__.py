"""Row loaders: JSONL/JSON, TSV/CSV, plain parallel text files, Hugging Face datasets.

Every reader yields plain dicts with the place they came from; :func:`load_rows` applies the
field mapping, ``explode`` and ``limit``, gives each row a stable key so that runs can resume,
and checks the values a pipeline reads as text or numbers, naming ``file:line`` and the field:

* a text field (a source, a reference) must hold text: a list, number or mapping is an error,
  never turned into its Python ``str()`` (``"['x']"``);
* a source sent to the model must not be empty or blank: an error naming the line (remove the
  row or fill it in), so that no empty prompt is paid for;
* a numeric field (human scores) holds finite numbers; CSV/TSV cells are parsed as numbers;
* ``src_lang``/``tgt_lang`` columns hold BCP-47 codes (normalised, e.g. ``zh_TW`` -> ``zh-TW``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DataError
from ..languages import LanguageError, normalize
from .files import MAX_LINE, iter_lines, open_regular, open_text
from .keytable import KeyTable
from .readers import (Located, detect_format, iter_jsonl, read_delimited, read_hf, read_json, read_parallel,
                      read_systems, resolve)

LANG_FIELDS = ("src_lang", "tgt_lang")


def iter_located(cfg: Any, base_dir: Path | None = None) -> Iterator[Located]:
    """``(where, record)`` for the raw records of a :class:`~promptweave.config.DataConfig`."""
    if cfg.systems:
        yield from read_systems(cfg.files or {}, cfg.systems, base_dir)
        return
    if cfg.files:
        yield from read_parallel(cfg.files, base_dir)
        return
    if not cfg.path:
        raise DataError("data: give 'path' (a data file) or 'files' (parallel text files)")
    fmt = cfg.format
    if fmt == "hf":
        yield from read_hf(cfg.path, cfg.split, cfg.hf_config, base_dir)
        return
    p = resolve(cfg.path, base_dir)
    from . import hrbench  # HR-Bench TSV/parquet: images are stored beside the file, rows get paths
    if hrbench.claims(p, fmt):
        yield from hrbench.read_rows(p)
        return
    if fmt == "auto":
        if p.is_dir():
            yield from read_hf(cfg.path, cfg.split, cfg.hf_config, base_dir)
            return
        fmt = detect_format(p)
    if fmt == "text":
        raise DataError("data: plain text needs 'files: {source: src.txt, reference: ref.txt}'")
    if fmt == "jsonl":
        from .readers import read_jsonl

        yield from read_jsonl(p)
    elif fmt == "json":
        yield from read_json(p)
    else:
        yield from read_delimited(p, "\t" if fmt == "tsv" else ",", frozenset(getattr(cfg, "null_values", ()) or ()))


def iter_records(cfg: Any, base_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """Raw records of a :class:`~promptweave.config.DataConfig` (no mapping or limit)."""
    for _, rec in iter_located(cfg, base_dir):
        yield rec


def read_jsonl(p: Path) -> Iterator[dict[str, Any]]:
    for _, obj in iter_jsonl(p):
        yield obj


def load_rows(cfg: Any, base_dir: Path | None = None, *, text_fields: Iterable[str] = (),
              source_fields: Iterable[str] = (), number_fields: Iterable[str] = ()) -> list[tuple[str, dict[str, Any]]]:
    """``[(key, fields)]`` after mapping, explode and limit (:func:`iter_rows`, in memory)."""
    return list(iter_rows(cfg, base_dir, text_fields=text_fields, source_fields=source_fields,
                          number_fields=number_fields))


def iter_rows(cfg: Any, base_dir: Path | None = None, *, text_fields: Iterable[str] = (),
              source_fields: Iterable[str] = (), number_fields: Iterable[str] = (),
              unique: bool = True, seen: KeyTable | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(key, fields)`` after mapping, explode and limit, streamed. Keys are unique and stable.

    ``text_fields`` must hold text (or null) where present; ``source_fields`` must be present,
    text and not blank (they are sent to the model); ``number_fields`` must be finite numbers
    (or null). Errors name ``file:line`` and the field. Only the keys seen are kept in memory
    (to refuse duplicates; ``unique=False`` for a pass that another one checked), so a data
    file of any length streams. ``seen``: the table the keys are kept in (the caller gets every
    key, at its row's position), packed (:mod:`.keytable`) rather than as one object each.
    """
    if seen is None:
        seen = KeyTable()
    mapping = dict(cfg.fields)
    checker = _Checker(set(text_fields), set(source_fields), set(number_fields))
    explode = cfg.explode or ("translations" if cfg.systems else None)
    n = 0
    for i, (where, rec) in enumerate(iter_located(cfg, base_dir)):
        fields = dict(rec)
        for ours, theirs in mapping.items():
            if theirs not in rec:
                raise DataError(f"{where}: data.fields.{ours}: column '{theirs}' is not in the data "
                                f"(the row has: {', '.join(map(str, rec))[:200]})")
            fields[ours] = rec[theirs]
        if cfg.key:
            if cfg.key not in fields:
                raise DataError(f"{where}: data.key: field '{cfg.key}' is not in the row")
            base_key = _key_text(fields[cfg.key], where, cfg.key)
        else:
            base_key = str(i)
        items = _explode(fields, explode, base_key, where) if explode else ((base_key, fields),)
        for key, row in items:
            if unique:
                before = len(seen)
                if seen.add(key) < before:
                    raise DataError(f"{where}: duplicate row key '{key}'; choose a unique data.key")
            checker.check(row, where)
            n += 1
            yield key, row
        if cfg.limit and (i + 1 if explode else n) >= cfg.limit:
            break
    if not n:
        raise DataError(f"data: no rows in {cfg.path or cfg.files}; is the file empty?")


def _key_text(value: Any, where: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: field '{name}' (data.key) must be text or an integer, "
                        f"got {type(value).__name__}")
    return str(value)


class _Checker:
    """Checks the values a pipeline reads; fixes nothing silently."""

    def __init__(self, text: set[str], source: set[str], number: set[str]) -> None:
        self.text, self.source, self.number = text | source, source, number

    def check(self, row: dict[str, Any], where: str) -> None:
        for name in self.source:
            if name not in row or row[name] is None:
                raise DataError(f"{where}: field '{name}' is missing or null; every row needs a source to "
                                f"translate (map a column with data.fields; the row has: "
                                f"{', '.join(map(str, row))[:200]})")
        for name in self.text:
            value = row.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{name}' must be text, got {_describe(value)}; "
                                "convert it in the data file")
            if name in self.source and not value.strip():
                raise DataError(f"{where}: field '{name}' is empty; an empty source would be sent to the model "
                                "as is: remove the row or fill it in")
        for name in self.number:
            if name in row:
                row[name] = _number(row[name], where, name)
        for name in LANG_FIELDS:
            value = row.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{name}' must be a language code, got {_describe(value)}")
            try:
                row[name] = normalize(value)
            except LanguageError as exc:
                raise DataError(f"{where}: field '{name}': {exc}") from None


def _describe(value: Any) -> str:
    kind = {list: "a list", dict: "a mapping", bool: "true/false", int: "a number", float: "a number"}
    return f"{kind.get(type(value), type(value).__name__)} ({str(value)[:40]})"


def _as_float(value: int | float) -> float:
    """``float(value)``; infinity for an integer past a float's range (scores are summed as floats)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _number(value: Any, where: str, name: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, str):  # CSV/TSV cells are text
        text = value.strip()
        if text == "":
            return None
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{where}: field '{name}' must be a number, got '{text[:40]}'") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: field '{name}' must be a number, got {_describe(value)}")
    if not math.isfinite(_as_float(value)):  # NaN, infinities, integers past a float's range
        raise DataError(f"{where}: field '{name}' is {str(value)[:40]}, not a finite number; use null for a missing score")
    return value


def _explode(fields: dict[str, Any], name: str, base_key: str, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    items = fields.get(name)
    if not isinstance(items, list):
        raise DataError(f"{where}: data.explode: the row has no list field '{name}'")
    parent = {k: v for k, v in fields.items() if k != name}
    for j, item in enumerate(items):
        sub = item if isinstance(item, dict) else {"value": item}
        label = sub.get("system", j)
        if isinstance(label, (dict, list)):
            raise DataError(f"{where}: data.explode: '{name}[{j}].system' must be text, got {_describe(label)}")
        # "item" ties a system's row to its source segment (for per-item statistics)
        yield f"{base_key}:{label}", {**parent, **sub, "item": base_key}


__all__ = ["LANG_FIELDS", "MAX_LINE", "iter_jsonl", "iter_lines", "iter_located", "iter_records", "load_rows",
           "open_regular", "open_text", "read_jsonl", "resolve"]

"""Readers of each data format. Every reader yields ``(where, record)``: ``where`` is
``file:line`` (or ``file: row N``) so that a later check can name the exact place of a bad value.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from . import strictjson
from .files import iter_lines, open_regular

Located = tuple[str, dict[str, Any]]
MAX_JSON_DOCUMENT = 512 * 1024 * 1024


def iter_jsonl(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; one-line errors name file:line."""
    for lineno, line in iter_lines(p):
        if not line.strip():
            continue
        try:
            obj = strictjson.loads(line)
        except strictjson.StrictJSONError as exc:
            raise DataError(f"{p}:{lineno}: {exc}; each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}:{lineno}: each line must be a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(p: Path) -> Iterator[Located]:
    for lineno, obj in iter_jsonl(p):
        yield f"{p}:{lineno}", obj


def read_json(p: Path) -> Iterator[Located]:
    with open_regular(p, "data") as f:
        raw = f.read(MAX_JSON_DOCUMENT + 1)
    if len(raw) > MAX_JSON_DOCUMENT:
        raise DataError(f"{p}: a single JSON document over {MAX_JSON_DOCUMENT >> 20} MiB; use JSONL instead")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{p}:{line}: not valid UTF-8; convert the file to UTF-8") from None
    try:
        data = strictjson.loads(text)
    except strictjson.StrictJSONError as exc:
        raise DataError(f"{p}: {exc}") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{p}: expected a JSON list of objects")
    for i, rec in enumerate(data, start=1):
        yield f"{p}: row {i}", rec


def read_delimited(p: Path, delimiter: str, null_values: frozenset[str] = frozenset()) -> Iterator[Located]:
    """CSV (RFC 4180 quoting: a quoted cell may hold commas and newlines) or TSV (no quoting).
    Cells stay text; only values listed in ``null_values`` become null."""
    lines = (line for _, line in iter_lines(p, keep_ends=True))
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DataError(f"{p}:1: malformed header ({exc})") from None
    seen: dict[str, int] = {}
    for col, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(f"{p}:1: column {col} of the header has no name; name every column")
        if name in seen:
            raise DataError(f"{p}:1: duplicate column '{name}' (columns {seen[name]} and {col}); "
                            "rename one of them")
        seen[name] = col
    last = reader.line_num
    while True:
        start = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{p}:{start}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None
        last = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DataError(f"{p}:{start}: {len(cells)} columns where the header has {len(header)}")
        yield f"{p}:{start}", {h: (None if c in null_values else c) for h, c in zip(header, cells)}


def resolve(path: str, base_dir: Path | None) -> Path:
    """A relative path resolves against ``base_dir`` (the pipeline file's directory) when given."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p


def _read_columns(files: dict[str, str], base_dir: Path | None, what: str) -> dict[str, tuple[Path, list[str]]]:
    out = {}
    for name, path in files.items():
        p = resolve(path, base_dir)
        out[name] = (p, [line for _, line in iter_lines(p, f"{what}.{name}")])
    return out


def _check_counts(columns: dict[str, tuple[Path, list[str]]], what: str) -> int:
    counts = {f: len(v) for f, (_, v) in columns.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{f}={n}" for f, n in counts.items())
        raise DataError(f"{what}: the files have different line counts ({detail}); "
                        "parallel files need one segment per line each")
    return next(iter(counts.values()), 0)


def read_parallel(files: dict[str, str], base_dir: Path | None) -> Iterator[Located]:
    columns = _read_columns(files, base_dir, "data.files")
    first = next(iter(columns.values()))[0] if columns else Path("?")
    for i in range(_check_counts(columns, "data.files")):
        yield f"{first}:{i + 1}", {f: v[i] for f, (_, v) in columns.items()}


def read_systems(files: dict[str, str], systems: dict[str, str], base_dir: Path | None) -> Iterator[Located]:
    """Plain per-system hypothesis files: one record per segment with a ``translations`` list
    (as in the WMT MQM JSONL files), to be exploded into one row per system."""
    shared = _read_columns(files, base_dir, "data.files")
    hyps = _read_columns(systems, base_dir, "data.systems")
    n = _check_counts({**shared, **{f"system {k}": v for k, v in hyps.items()}}, "data.files/data.systems")
    first = next(iter({**shared, **hyps}.values()))[0] if shared or hyps else Path("?")
    for i in range(n):
        rec: dict[str, Any] = {f: v[i] for f, (_, v) in shared.items()}
        rec["translations"] = [{"system": name, "hypothesis": lines[i]} for name, (_, lines) in hyps.items()]
        yield f"{first}:{i + 1}", rec


def read_hf(path: str, split: str, config: str | None, base_dir: Path | None) -> Iterator[Located]:
    try:
        import datasets
    except ImportError as exc:
        from ..errors import MissingDependency

        raise MissingDependency("datasets", "hf", exc) from None
    p = resolve(path, base_dir)
    try:
        if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(p) if p.exists() else path, config, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
        raise DataError(f"data.path: cannot load Hugging Face dataset '{path}': {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    for i, rec in enumerate(ds, start=1):
        yield f"{path}: row {i}", rec


def detect_format(p: Path) -> str:
    suffix = "".join(p.suffixes[-2:]) if p.suffix in {".gz"} else p.suffix
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".tsv": "tsv", ".csv": "csv",
            ".txt": "text"}.get(suffix.lower(), "jsonl")

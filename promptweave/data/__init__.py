"""Row loaders: JSONL/JSON, TSV/CSV, plain parallel text files, Hugging Face datasets.

Every loader yields plain dicts; :func:`load_rows` applies the field mapping, ``explode`` and
``limit``, and gives each row a stable key so that runs can resume.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError

MAX_LINE = 64 * 1024 * 1024  # a longer line is a broken file, not data


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None and not p.exists() and (base_dir / p).exists():
        p = base_dir / p
    return p


def _open_text(p: Path, what: str) -> io.TextIOWrapper:
    if not p.exists():
        raise DataError(f"{what}: {p} does not exist; check the path (relative paths resolve against "
                        "the working directory, then the pipeline file's directory)")
    if p.is_dir():
        raise DataError(f"{what}: {p} is a directory, not a file")
    try:
        return open(p, encoding="utf-8-sig", newline="")  # -sig: a leading BOM is not data
    except OSError as exc:
        raise DataError(f"{what}: cannot read {p}: {exc.strerror}") from None


def iter_lines(p: Path, what: str = "data") -> Iterator[tuple[int, str]]:
    """(line number, text without newline); errors on invalid UTF-8 or absurdly long lines."""
    with _open_text(p, what) as f:
        lineno = 0
        while True:
            lineno += 1
            try:
                line = f.readline(MAX_LINE + 1)
            except UnicodeDecodeError:
                # the decoder reads ahead, so the error can surface a few lines early
                lineno = _first_bad_utf8_line(p, lineno)
                raise DataError(f"{p}:{lineno}: not valid UTF-8; convert the file to UTF-8") from None
            if not line:
                return
            if len(line) > MAX_LINE:
                raise DataError(f"{p}:{lineno}: line is longer than {MAX_LINE // (1024 * 1024)} MiB; "
                                "is this really a line-based data file?")
            yield lineno, line.rstrip("\r\n")


def _first_bad_utf8_line(p: Path, start: int) -> int:
    with open(p, "rb") as f:
        n = 0
        while raw := f.readline(MAX_LINE + 1):
            n += 1
            if n >= start:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return n
    return start


def iter_jsonl(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; one-line errors name file:line."""
    for lineno, line in iter_lines(p):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                            "each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}:{lineno}: each line must be a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(p: Path) -> Iterator[dict[str, Any]]:
    for _, obj in iter_jsonl(p):
        yield obj


def read_json(p: Path) -> Iterator[dict[str, Any]]:
    if p.stat().st_size > 2 * 1024**3:
        raise DataError(f"{p}: a single JSON document over 2 GiB; use JSONL instead")
    with _open_text(p, "data") as f:
        try:
            data = json.load(f)
        except UnicodeDecodeError:
            raise DataError(f"{p}: not valid UTF-8; convert the file to UTF-8") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{p}: expected a JSON list of objects")
    yield from data


def read_delimited(p: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    lines = (line for _, line in iter_lines(p))
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
    try:
        header = next(reader)
    except StopIteration:
        return
    for n, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DataError(f"{p}:{n}: {len(cells)} columns where the header has {len(header)}")
        yield {h: (None if c == "None" and delimiter == "\t" else c) for h, c in zip(header, cells)}


def _read_columns(files: dict[str, str], base_dir: Path | None, what: str) -> dict[str, list[str]]:
    return {name: [line for _, line in iter_lines(_resolve(path, base_dir), f"{what}.{name}")]
            for name, path in files.items()}


def _check_counts(columns: dict[str, list[str]], what: str) -> int:
    counts = {f: len(v) for f, v in columns.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{f}={n}" for f, n in counts.items())
        raise DataError(f"{what}: the files have different line counts ({detail}); "
                        "parallel files need one segment per line each")
    return next(iter(counts.values()), 0)


def read_parallel(files: dict[str, str], base_dir: Path | None) -> Iterator[dict[str, Any]]:
    columns = _read_columns(files, base_dir, "data.files")
    for i in range(_check_counts(columns, "data.files")):
        yield {f: v[i] for f, v in columns.items()}


def read_systems(files: dict[str, str], systems: dict[str, str],
                 base_dir: Path | None) -> Iterator[dict[str, Any]]:
    """Plain per-system hypothesis files: one record per segment with a ``translations`` list
    (as in the WMT MQM JSONL files), to be exploded into one row per system."""
    shared = _read_columns(files, base_dir, "data.files")
    hyps = _read_columns(systems, base_dir, "data.systems")
    n = _check_counts({**shared, **{f"system {k}": v for k, v in hyps.items()}}, "data.files/data.systems")
    for i in range(n):
        rec: dict[str, Any] = {f: v[i] for f, v in shared.items()}
        rec["translations"] = [{"system": name, "hypothesis": lines[i]} for name, lines in hyps.items()]
        yield rec


def read_hf(path: str, split: str, config: str | None, base_dir: Path | None) -> Iterator[dict[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        from ..errors import MissingDependency

        raise MissingDependency("datasets", "hf", exc) from None
    p = _resolve(path, base_dir)
    try:
        if p.is_dir() and (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(p) if p.exists() else path, config, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
        raise DataError(f"data.path: cannot load Hugging Face dataset '{path}': {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    yield from ds


def _detect(p: Path) -> str:
    suffix = "".join(p.suffixes[-2:]) if p.suffix in {".gz"} else p.suffix
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".tsv": "tsv", ".csv": "csv",
            ".txt": "text"}.get(suffix.lower(), "jsonl")


def iter_records(cfg: Any, base_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    """Raw records of a :class:`~promptweave.config.DataConfig` (no mapping or limit)."""
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
    p = _resolve(cfg.path, base_dir)
    from . import hrbench  # HR-Bench TSV/parquet: images are stored beside the file, rows get paths
    if hrbench.claims(p, fmt):
        yield from hrbench.read_rows(p)
        return
    if fmt == "auto":
        if p.is_dir():
            yield from read_hf(cfg.path, cfg.split, cfg.hf_config, base_dir)
            return
        fmt = _detect(p)
    if fmt == "text":
        raise DataError("data: plain text needs 'files: {source: src.txt, reference: ref.txt}'")
    reader = {"jsonl": read_jsonl, "json": read_json}.get(fmt)
    if reader is not None:
        yield from reader(p)
    else:
        yield from read_delimited(p, "\t" if fmt == "tsv" else ",")


def load_rows(cfg: Any, base_dir: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``[(key, fields)]`` after mapping, explode and limit. Keys are unique and stable."""
    rows: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    mapping = dict(cfg.fields)
    for i, rec in enumerate(iter_records(cfg, base_dir)):
        fields = dict(rec)
        for ours, theirs in mapping.items():
            if theirs not in rec:
                raise DataError(f"data.fields.{ours}: column '{theirs}' is not in the data "
                                f"(row {i + 1} has: {', '.join(map(str, rec))[:200]})")
            fields[ours] = rec[theirs]
        if cfg.key:
            if cfg.key not in fields:
                raise DataError(f"data.key: field '{cfg.key}' is not in row {i + 1}")
            base_key = str(fields[cfg.key])
        else:
            base_key = str(i)
        items = [(base_key, fields)]
        explode = cfg.explode or ("translations" if cfg.systems else None)
        if explode:
            items = list(_explode(fields, explode, base_key, i))
        for key, row in items:
            if key in seen:
                raise DataError(f"data: duplicate row key '{key}'; choose a unique data.key")
            seen.add(key)
            rows.append((key, row))
        if cfg.limit and (i + 1 if explode else len(rows)) >= cfg.limit:
            break
    if not rows:
        raise DataError(f"data: no rows in {cfg.path or cfg.files}; is the file empty?")
    return rows


def _explode(fields: dict[str, Any], name: str, base_key: str, i: int) -> Iterator[tuple[str, dict[str, Any]]]:
    items = fields.get(name)
    if not isinstance(items, list):
        raise DataError(f"data.explode: row {i + 1} has no list field '{name}'")
    parent = {k: v for k, v in fields.items() if k != name}
    for j, item in enumerate(items):
        sub = item if isinstance(item, dict) else {"value": item}
        label = sub.get("system", j)
        # "item" ties a system's row to its source segment (for per-item statistics)
        yield f"{base_key}:{label}", {**parent, **sub, "item": base_key}

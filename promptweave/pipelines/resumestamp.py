"""Resuming a finished run without reading its data or its records again.

A run that finished leaves ``.resume.json``: the run identity (config, templates, example files
and settings, :mod:`.identity`), the size, modification time and inode of every data file and
of ``results.jsonl``, and how many rows and failed rows it holds. When the same command runs
again and all of these are unchanged, no row can have new inputs and every row is stored, so the
engine skips both passes over the data and the index of the records: the run is resumed in the
time it takes to start and rewrite the report. Anything else (a data file touched, a template
edited, ``--retry-errors`` with failed rows, a data source that is not plain files, a missing or
unreadable stamp) takes the normal path, which checks every row; so this can only save work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..data.readers import resolve
from .rundir import write_json_atomic

STAMP_FILE = ".resume.json"


def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino] if os.path.isfile(path) else None


def data_files(data: Any, base_dir: Path | None) -> list[Path] | None:
    """The files the rows come from, when they are plain files (``None``: no fast path)."""
    if data.systems or getattr(data, "format", "auto") == "hf":
        return None
    if data.files:
        return [resolve(str(p), base_dir) for p in data.files.values()]
    if data.path:
        p = resolve(str(data.path), base_dir)
        return [p] if p.is_file() and p.suffix.lower() != ".parquet" else None
    return None


def _identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def stamp(run_dir: Path, identity: dict[str, Any], files: list[Path] | None, rows: int, errors: int) -> None:
    """Record that ``run_dir`` is finished for these inputs (after its last file is written)."""
    if files is None:
        forget(run_dir)
        return
    stats = [_stat(p) for p in files]
    results = _stat(run_dir / "results.jsonl")
    if results is None or any(s is None for s in stats):
        forget(run_dir)
        return
    write_json_atomic(run_dir / STAMP_FILE, {"identity": _identity_hash(identity),
                                             "data": [[str(p), s] for p, s in zip(files, stats)],
                                             "results": results, "rows": rows, "errors": errors})


def finished(run_dir: Path, identity: dict[str, Any], files: list[Path] | None,
             retry_errors: bool) -> tuple[int, int] | None:
    """``(rows, failed rows)`` when the run is finished for exactly these inputs, else ``None``."""
    if files is None:
        return None
    try:
        saved = json.loads((run_dir / STAMP_FILE).read_text(encoding="utf-8"))
        rows, errors = int(saved["rows"]), int(saved["errors"])
        same = (saved["identity"] == _identity_hash(identity)
                and saved["data"] == [[str(p), _stat(p)] for p in files]
                and saved["results"] == _stat(run_dir / "results.jsonl"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or (errors and retry_errors):
        return None
    return rows, errors


def forget(run_dir: Path) -> None:
    """Drop the stamp before the run directory changes."""
    with contextlib.suppress(OSError):
        os.unlink(run_dir / STAMP_FILE)

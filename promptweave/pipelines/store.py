"""The run directory: ``results.jsonl`` appended one finished row at a time, plus the closing
files (``manifest.json``, ``scores.json``, ``report.md``).

Crash safety: every finished row is written and flushed at once; a row cut short by a kill is
a partial last line, which :meth:`RunStore.open` trims before appending. A key written twice
(a retried error) keeps its last record; :meth:`RunStore.compact` rewrites the file with one
line per key, atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from ..secrets import scrub


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(scrub(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(scrub(text), encoding="utf-8")
    os.replace(tmp, path)


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.results_path = run_dir / "results.jsonl"
        self.records: dict[str, dict[str, Any]] = {}
        self._fh: TextIO | None = None

    def open(self) -> None:
        """Create the directory, load finished rows, and trim a torn last line."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.results_path.exists():
            good_bytes = 0
            with open(self.results_path, "rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break  # torn write from a killed run
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError:
                        break
                    self.records[rec["key"]] = rec
                    good_bytes += len(raw)
            if good_bytes != self.results_path.stat().st_size:
                with open(self.results_path, "rb+") as f:
                    f.truncate(good_bytes)
        self._fh = open(self.results_path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        assert self._fh is not None, "RunStore.open() first"
        self._fh.write(scrub(json.dumps(record, ensure_ascii=False, default=str)) + "\n")
        self._fh.flush()
        self.records[record["key"]] = record

    def compact(self) -> None:
        """One line per key, in row order; atomic."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        ordered = sorted(self.records.values(), key=lambda r: r.get("index", 0))
        tmp = self.results_path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in ordered:
                f.write(scrub(json.dumps(rec, ensure_ascii=False, default=str)) + "\n")
        os.replace(tmp, self.results_path)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

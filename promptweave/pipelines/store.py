"""The run directory's table of finished rows: ``results.jsonl``, one JSON record a line.

Every finished row is appended (and handed to the kernel) at once, so a killed run loses at
most the rows in flight. A key written twice keeps its last record; :meth:`RunStore.compact`
rewrites the file atomically with one line per current row, in data order.

Recovery: :meth:`RunStore.open` keeps every readable record wherever the damage is: a torn last
line, a corrupt line in the middle, NUL padding left by a power loss (also glued in front of a
later record), invalid UTF-8, a record without ``key`` or with fields of the wrong type. What it
drops is appended byte for byte to ``results.jsonl.corrupt``, the skipped line numbers go to the
log and to :attr:`RunStore.recovery` (the manifest), and the file is rewritten with the good
records before anything is appended to it.

Callers read records through :meth:`get`, :meth:`__iter__` and :meth:`ordered`, never the
storage, so that the records can later live in an index on disk rather than in memory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .rundir import (O_CLOEXEC, O_NOFOLLOW, RunDirError, open_append, fs_error, write_all, write_bytes_atomic, write_json_atomic,  # noqa: F401
                     write_text_atomic)

log = logging.getLogger("promptweave.store")

_NULS = re.compile(rb"\x00+")
_RECORD_START = '{"key":'
_STATUSES = {"ok", "error"}


def _dump(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogatepass")


def record_problem(obj: Any) -> str | None:
    """Why ``obj`` is not a usable results record (None when it is)."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a record"
    if not isinstance(obj.get("key"), str) or not obj["key"]:
        return "no 'key' (a string)"
    if obj.get("status") not in _STATUSES:
        return "'status' is not ok/error"
    for name in ("fields", "outputs"):
        if not isinstance(obj.get(name), dict):
            return f"'{name}' is not an object"
    if "index" in obj and (not isinstance(obj["index"], int) or isinstance(obj["index"], bool)):
        return "'index' is not an integer"
    if "fp" in obj and not isinstance(obj["fp"], str):
        return "'fp' is not a string"
    if "error" in obj and not isinstance(obj["error"], dict):
        return "'error' is not an object"
    return None


_DECODER = json.JSONDecoder()


def _parse(piece: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = json.loads(piece.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "invalid UTF-8"
    except (ValueError, RecursionError):
        return None, "not JSON"
    problem = record_problem(obj)
    return (obj, "") if problem is None else (None, problem)


def _salvage(text: bytes, why: str) -> Iterator[tuple[dict[str, Any] | None, bytes, str]]:
    """Whole records inside a damaged piece: each starts at ``{"key":`` (how records are
    written) and is decoded as a prefix, so a torn record before it or junk after it is cut
    off and dropped, never the record itself."""
    s = text.decode("utf-8", "surrogateescape")  # byte offsets survive the round trip per char
    pos = 0
    start = s.find(_RECORD_START)
    while start != -1:
        try:
            obj, end = _DECODER.raw_decode(s, start)
            chunk = s[start:end].encode("utf-8", "strict")  # a record with undecodable bytes is damaged
        except (ValueError, RecursionError, UnicodeEncodeError):
            obj = None
        if obj is not None and record_problem(obj) is None:
            if s[pos:start].strip():
                yield None, s[pos:start].encode("utf-8", "surrogateescape"), why
            yield obj, chunk, ""
            pos = end
        start = s.find(_RECORD_START, max(start + 1, pos))
    if s[pos:].strip():
        yield None, s[pos:].encode("utf-8", "surrogateescape"), why


def scan_records(lines: Iterator[bytes]) -> Iterator[tuple[int, dict[str, Any] | None, bytes, str]]:
    """``(line number, record or None, bytes, reason)`` for each piece of each line: a record
    kept, or bytes dropped with the reason. A line is split at NUL runs; a piece that does not
    parse is searched for whole records glued to junk (a write after a torn one)."""
    for lineno, raw in enumerate(lines, start=1):
        body = raw[:-1] if raw.endswith(b"\n") else raw
        for piece in _NULS.split(body):
            text = piece.strip()
            if not text:
                if piece:
                    yield lineno, None, piece, "blank"
                continue
            rec, why = _parse(text)
            if rec is not None:
                yield lineno, rec, text, ""
            else:
                for found, chunk, reason in _salvage(text, why):
                    yield lineno, found, chunk, reason
        if b"\x00" in body:
            yield lineno, None, b"", "NUL bytes"


class RunStore:
    """The finished rows of one run directory (the caller holds the run directory's lock)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.results_path = run_dir / "results.jsonl"
        self.corrupt_path = run_dir / "results.jsonl.corrupt"
        self.superseded_path = run_dir / "superseded.jsonl"
        self._records: dict[str, dict[str, Any]] = {}
        self._superseded: list[dict[str, Any]] = []
        self._fd: int | None = None
        self.recovery: dict[str, Any] | None = None

    # ------------------------------------------------------------------ reading
    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def ordered(self) -> list[dict[str, Any]]:
        """Every record, in data order."""
        return sorted(self._records.values(), key=lambda r: r.get("index", 0))

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """Deprecated view (key -> record); iterate the store or use :meth:`get` instead."""
        return self._records

    # ------------------------------------------------------------------ opening and recovery
    def open(self) -> None:
        """Load finished rows, recovering every readable one; then open for appending."""
        self.dir.mkdir(parents=True, exist_ok=True)
        dropped: list[tuple[int, bytes, str]] = []
        ends_clean = True
        try:
            fd = os.open(self.results_path, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            raise fs_error(self.results_path, exc, "read") from None
        if fd is not None:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise fs_error(self.results_path, OSError(errno.EISDIR, "not a file"), "read")
            with os.fdopen(fd, "rb") as f:
                try:
                    for lineno, rec, raw, why in scan_records(iter(f.readline, b"")):
                        if rec is not None:
                            self._records[rec["key"]] = rec
                        else:
                            dropped.append((lineno, raw, why))
                    size = f.seek(0, os.SEEK_END)
                    if size:
                        f.seek(size - 1)
                        ends_clean = f.read(1) == b"\n"
                except OSError as exc:
                    raise fs_error(self.results_path, exc, "read") from None
        if dropped or not ends_clean:
            self._recover(dropped)
        self._fd = open_append(self.results_path)

    def _recover(self, dropped: list[tuple[int, bytes, str]]) -> None:
        lines = sorted({n for n, _, _ in dropped})
        if dropped:
            fd = open_append(self.corrupt_path)
            try:
                write_all(fd, b"".join(raw + b"\n" for _, raw, _ in dropped if raw), self.corrupt_path)
            finally:
                os.close(fd)
        write_bytes_atomic(self.results_path, b"".join(_dump(r) for r in self._records.values()))
        reasons = sorted({why for _, _, why in dropped})
        self.recovery = {"kept_rows": len(self._records), "skipped_lines": lines, "reasons": reasons,
                         "dropped_bytes_in": self.corrupt_path.name if dropped else None}
        if lines:
            shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
            log.warning("%s: skipped %d unreadable line(s) (%s: %s); kept %d rows; the dropped bytes are in %s",
                        self.results_path, len(lines), shown, "; ".join(reasons), len(self._records),
                        self.corrupt_path.name)

    # ------------------------------------------------------------------ writing
    def append(self, record: dict[str, Any]) -> None:
        """Write one finished row now; a row it replaces with other inputs is kept aside."""
        assert self._fd is not None, "RunStore.open() first"
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, _dump(record), self.results_path)
        except RunDirError:
            with contextlib.suppress(OSError):  # no torn line left behind by a short write
                os.ftruncate(self._fd, size)
            raise
        old = self._records.get(record["key"])
        if old is not None and old.get("fp") != record.get("fp") and old.get("status") == "ok":
            self._superseded.append(old)
        self._records[record["key"]] = record

    def compact(self, order: list[str] | None = None) -> int:
        """Rewrite ``results.jsonl`` with one line per key of ``order`` (the current rows, whose
        ``index`` follows it), atomically. Records of keys no longer in the data, and results a
        changed input replaced, are appended to ``superseded.jsonl``, never lost. Returns how
        many records moved there."""
        self.close()
        if order is None:
            order = [r["key"] for r in self.ordered()]
        keep = {k: i for i, k in enumerate(order)}
        gone = [r for k, r in self._records.items() if k not in keep]
        moved = self._superseded + gone
        if moved:
            fd = open_append(self.superseded_path)
            try:
                write_all(fd, b"".join(_dump(r) for r in moved), self.superseded_path)
            finally:
                os.close(fd)
        for r in gone:
            del self._records[r["key"]]
        for k, r in self._records.items():
            r["index"] = keep[k]
        self._superseded = []
        write_bytes_atomic(self.results_path, b"".join(_dump(r) for r in self.ordered()))
        return len(moved)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

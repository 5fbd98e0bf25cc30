"""The run directory's table of finished rows: ``results.jsonl``, one JSON record a line.

Every finished row is appended (and handed to the kernel) at once, so a killed run loses at
most the rows in flight. A key written twice keeps its last record; :meth:`RunStore.compact`
rewrites the file atomically with one line per current row, in data order.

The store holds an **index**, not the records: per key the byte range of its last record, its
status, fingerprint and row index (about 150 bytes a row, kept column-wise by :class:`_Index`).
Records are read back from the file when asked for (:meth:`get`, iteration), so memory does not
grow with what the rows hold.

Recovery (:mod:`.recovery`): :meth:`RunStore.open` keeps every readable record wherever the
damage is. What it drops is appended byte for byte to ``results.jsonl.corrupt``, the skipped
line numbers go to the log and to :attr:`RunStore.recovery` (the manifest), and the file is
rewritten with the good records before anything is appended to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..data.keytable import KeyTable
from ..secrets import scrub
from .recovery import parse_record, record_problem, scan_records  # noqa: F401 - record_problem re-exported
from .rundir import (RunDirError, fs_error, open_append, open_regular, temp_beside,  # noqa: F401
                     write_all, write_bytes_atomic, write_json_atomic, write_text_atomic)

log = logging.getLogger("promptweave.store")


class Entry(NamedTuple):
    """Where a key's current record lies, and what resume needs to know about it."""

    offset: int
    length: int  # without the newline
    ok: bool
    fp: str | None
    index: int


def _dump(record: dict[str, Any]) -> bytes:
    return (scrub(json.dumps(record, ensure_ascii=False, default=str)) + "\n").encode("utf-8", "surrogatepass")


def _entry(record: dict[str, Any], offset: int, length: int) -> Entry:
    return Entry(offset, length, record["status"] == "ok", record.get("fp"), int(record.get("index", 0)))


class _Index:
    """Key -> :class:`Entry`, stored column-wise: the keys packed in a :class:`KeyTable` (a key's
    position there is its slot) and one compact array per field, about 50 bytes a row with a
    short key and no Python object per row, so that a run of a million rows indexes in ~50 MB."""

    __slots__ = ("keys", "offset", "length", "ok", "index", "fp", "fp_text")

    def __init__(self) -> None:
        self.keys = KeyTable()
        self.offset, self.length, self.index = array("q"), array("q"), array("q")
        self.ok = bytearray()
        self.fp = array("Q")  # the fingerprint as a number when it is the usual 16 hex digits
        self.fp_text: dict[int, str | None] = {}  # slots whose fingerprint is anything else (or none)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def get(self, key: str) -> Entry | None:
        s = self.keys.index(key)
        return None if s < 0 else self.entry(s)

    def entry(self, s: int) -> Entry:
        fp = self.fp_text[s] if s in self.fp_text else f"{self.fp[s]:016x}"
        return Entry(self.offset[s], self.length[s], bool(self.ok[s]), fp, self.index[s])

    def put(self, key: str, e: Entry) -> None:
        n = len(self.keys)
        s = self.keys.add(key)
        fp_num = _fp_number(e.fp)
        if s == n:
            self.offset.append(e.offset)
            self.length.append(e.length)
            self.index.append(e.index)
            self.ok.append(e.ok)
            self.fp.append(fp_num if fp_num is not None else 0)
        else:
            self.offset[s], self.length[s], self.index[s], self.ok[s] = e.offset, e.length, e.index, e.ok
            self.fp[s] = fp_num if fp_num is not None else 0
            self.fp_text.pop(s, None)
        if fp_num is None:
            self.fp_text[s] = e.fp

    def slots_by(self, order: str) -> array:
        """The slots in file order (``"offset"``) or data order (``"index"``, then file order)."""
        import numpy as np  # only here: sorting a million rows is numpy's job

        off = np.array(self.offset, dtype=np.int64)
        by = np.argsort(off, kind="stable") if order == "offset" else \
            np.lexsort((off, np.array(self.index, dtype=np.int64)))
        return array("q", by.astype(np.int64).tobytes())

    def count_ok(self) -> int:
        return self.ok.count(1)


def _fp_number(fp: str | None) -> int | None:
    if isinstance(fp, str) and len(fp) == 16:
        try:
            n = int(fp, 16)
        except ValueError:
            return None
        if f"{n:016x}" == fp:
            return n
    return None


class RunStore:
    """The finished rows of one run directory (the caller holds the run directory's lock)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.results_path = run_dir / "results.jsonl"
        self.corrupt_path = run_dir / "results.jsonl.corrupt"
        self.superseded_path = run_dir / "superseded.jsonl"
        self._index = _Index()
        self._replaced: list[Entry] = []  # ok results a changed input replaced, kept at compaction
        self._dirty = False  # the file holds more than one line per key, or junk
        self._kept_aside = False  # dropped bytes went to results.jsonl.corrupt
        self._fd: int | None = None  # append
        self._rfd: int | None = None  # pread
        self.recovery: dict[str, Any] | None = None
        self._opened = False

    # ------------------------------------------------------------------ reading
    def status(self, key: str) -> Entry | None:
        """The index entry of ``key`` (status, fingerprint) without reading its record."""
        return self._index.get(key)

    def to_run(self, keys: Iterable[str], fps: Any, *, retry_errors: bool = False) -> tuple[bytearray, int]:
        """Which of the data rows ``keys`` (fingerprints ``fps``, numbers) must run: those not
        stored, stored with other inputs, or failed when ``retry_errors``. Also how many of them
        run because their inputs changed."""
        ix = self._index
        n = len(fps)
        if not len(ix):  # a fresh run: every row
            return bytearray(b"\x01") * n, 0
        find, ok, fp_num, fp_text = ix.keys.index, ix.ok, ix.fp, ix.fp_text
        todo = bytearray(n)
        changed = 0
        for i, key in enumerate(keys):
            s = find(key)
            if s < 0:
                todo[i] = 1
                continue
            same = fp_num[s] == fps[i] and s not in fp_text
            if same and (ok[s] or not retry_errors):
                continue
            todo[i] = 1
            changed += not same
        return todo, changed

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._index.get(key)
        return None if entry is None else self._read(entry)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every current record, streamed from the file in file order."""
        for s in self._index.slots_by("offset"):
            yield self._read(self._index.entry(s))

    def iter_ordered(self) -> Iterator[dict[str, Any]]:
        """Every current record, streamed in data order."""
        for s in self._index.slots_by("index"):
            yield self._read(self._index.entry(s))

    def ordered(self) -> list[dict[str, Any]]:
        """Every record in data order, in memory (prefer :meth:`iter_ordered`)."""
        return list(self.iter_ordered())

    def head_ranges(self, n: int, parts: int) -> list[tuple[int, int, int]]:
        """The first ``n`` records in data order as ``parts`` byte ranges of the file, each
        ``(start, stop, first record)``, when they lie at its start back to back in that order,
        their ``index`` counting from 0 (a compacted run); else ``[]``."""
        import numpy as np

        ix = self._index
        n = min(n, len(ix))
        if n == 0:
            return []
        order = np.frombuffer(ix.slots_by("index"), dtype=np.int64)[:n]
        off = np.frombuffer(ix.offset, dtype=np.int64)[order]
        end = off + np.frombuffer(ix.length, dtype=np.int64)[order] + 1
        if off[0] != 0 or not (off[1:] == end[:-1]).all() \
                or not (np.frombuffer(ix.index, dtype=np.int64)[order] == np.arange(n)).all():
            return []
        cuts = sorted({n * k // parts for k in range(parts)} | {n})
        return [(int(off[a]), int(end[b - 1]), a) for a, b in zip(cuts, cuts[1:])]

    def head_digest(self, n: int) -> tuple[int, int] | None:
        """``(count, bytes without their newlines)`` of the first ``n`` records in data order when
        they lie as :meth:`head_ranges` says (a compacted run); else ``None``."""
        ranges = self.head_ranges(n, 1)
        if not ranges:
            return None
        start, stop, _ = ranges[0]
        count = min(n, len(self._index))
        return count, stop - start - count

    def count(self, *, ok: bool) -> int:
        n_ok = self._index.count_ok()
        return n_ok if ok else len(self._index) - n_ok

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """Deprecated: reads every record into a dict; iterate the store or use :meth:`get`."""
        return {r["key"]: r for r in self}

    def _read(self, entry: Entry) -> dict[str, Any]:
        raw = self._pread(entry.offset, entry.length)
        rec, why = parse_record(raw)
        if rec is None:  # the file changed under the lock's holder: someone else wrote to it
            raise RunDirError(f"{self.results_path} changed while this run held it ({why} at byte "
                              f"{entry.offset}); run the same command again to recover it")
        return rec

    def _pread(self, offset: int, length: int) -> bytes:
        if self._rfd is None:
            self._rfd = open_regular(self.results_path, os.O_RDONLY, "read")
        try:
            return os.pread(self._rfd, length, offset)
        except OSError as exc:
            raise fs_error(self.results_path, exc, "read") from None

    # ------------------------------------------------------------------ opening and recovery
    @property
    def opened(self) -> bool:
        """Whether :meth:`open` indexed the file (a run resumed from its stamp does not)."""
        return self._opened

    def open(self) -> None:
        """Index finished rows, recovering every readable one; then open for appending."""
        self._opened = True
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = open_regular(self.results_path, os.O_RDONLY, "read") if os.path.lexists(self.results_path) else None
        if fd is not None:
            with os.fdopen(fd, "rb") as f:
                try:
                    skipped, reasons = self._scan(f)
                    size = f.seek(0, os.SEEK_END)
                    ends_clean = size == 0 or (f.seek(size - 1) >= 0 and f.read(1) == b"\n")
                except OSError as exc:
                    raise fs_error(self.results_path, exc, "read") from None
            if skipped or not ends_clean:
                self._rewrite_clean(skipped, reasons)
        self._fd = open_append(self.results_path)

    def _scan(self, f: Any) -> tuple[list[int], list[str]]:
        skipped: set[int] = set()
        reasons: set[str] = set()
        corrupt: int | None = None
        try:
            for piece in scan_records(f):
                if piece.record is not None:
                    key = piece.record["key"]
                    self._dirty |= key in self._index
                    self._index.put(key, _entry(piece.record, piece.start, piece.end - piece.start))
                    continue
                if piece.reason == "blank":
                    self._dirty = True  # harmless, but the rewrite drops it
                    continue
                skipped.add(piece.lineno)
                reasons.add(piece.reason)
                if piece.raw:  # the dropped bytes, kept as they were
                    if corrupt is None:
                        corrupt = open_append(self.corrupt_path)
                    write_all(corrupt, piece.raw + b"\n", self.corrupt_path)
        finally:
            if corrupt is not None:
                os.close(corrupt)
        self._kept_aside = corrupt is not None
        return sorted(skipped), sorted(reasons)

    def _rewrite_clean(self, skipped: list[int], reasons: list[str]) -> None:
        """Replace the file by its good records (copied byte for byte), before any append."""
        self._write_file(self._index.slots_by("offset"), renumber=False)
        kept_aside = self._kept_aside
        self.recovery = {"kept_rows": len(self._index), "skipped_lines": skipped, "reasons": reasons,
                         "dropped_bytes_in": self.corrupt_path.name if kept_aside else None}
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
            log.warning("%s: skipped %d unreadable line(s) (%s: %s); kept %d rows%s",
                        self.results_path, len(skipped), shown, "; ".join(reasons), len(self._index),
                        f"; the dropped bytes are in {self.corrupt_path.name}" if kept_aside else "")

    def _write_file(self, slots: Iterable[int], *, renumber: bool) -> None:
        """Stream the records of ``slots`` (of the index) into a fresh temp file and rename it over
        the results; a record whose row moved gets its new ``index`` (the others are copied)."""
        old, new = self._index, _Index()
        fd, tmp = temp_beside(self.results_path)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                pos = 0
                for i, s in enumerate(slots):
                    entry = old.entry(s)
                    raw = self._pread(entry.offset, entry.length)
                    if renumber and entry.index != i:
                        rec = self._read(entry)
                        rec["index"] = i
                        raw = _dump(rec)[:-1]
                        entry = _entry(rec, 0, 0)
                    out.write(raw + b"\n")
                    new.put(old.keys[s], entry._replace(offset=pos, length=len(raw)))
                    pos += len(raw) + 1
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.results_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise fs_error(self.results_path, exc) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._close_reader()  # the old file is gone: read the new one from now on
        self._index, self._dirty = new, False

    # ------------------------------------------------------------------ writing
    def append(self, record: dict[str, Any]) -> Entry:
        """Write one finished row now; an ok result it replaces with other inputs is kept aside.
        Returns where it lies."""
        assert self._fd is not None, "RunStore.open() first"
        line = _dump(record)
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, line, self.results_path)
        except RunDirError:
            with contextlib.suppress(OSError):  # no torn line left behind by a short write
                os.ftruncate(self._fd, size)
            raise
        key = record["key"]
        old = self._index.get(key)
        if old is not None:
            self._dirty = True
            if old.ok and old.fp != record.get("fp"):
                self._replaced.append(old)
        entry = _entry(record, size, len(line) - 1)
        self._index.put(key, entry)
        return entry

    def compact(self, order: Iterable[str] | None = None) -> int:
        """Leave ``results.jsonl`` with one line per key of ``order`` (the current rows, whose
        ``index`` follows it), rewritten atomically only when it holds anything else. Records of
        keys no longer in the data, and ok results a changed input replaced, are appended to
        ``superseded.jsonl``, never lost. Returns how many records moved there."""
        self.close()
        ix = self._index
        if order is None:
            slots = ix.slots_by("index")
            gone: list[Entry] = []
        else:  # one lookup per key of the data; what the data no longer has is marked, not probed
            find, slots, kept = ix.keys.index, array("q"), bytearray(len(ix))
            for key in order:
                s = find(key)
                if s >= 0:
                    slots.append(s)
                    kept[s] = 1
            gone = [ix.entry(s) for s in range(len(ix)) if not kept[s]] if len(slots) < len(ix) else []
        moved = self._replaced + gone
        if moved:
            fd = open_append(self.superseded_path)
            try:
                for entry in sorted(moved):
                    write_all(fd, self._pread(entry.offset, entry.length) + b"\n", self.superseded_path)
            finally:
                os.close(fd)
        if self._dirty or moved or not self._in_order(slots):
            self._write_file(slots, renumber=True)
        self._replaced = []
        return len(moved)

    def _in_order(self, slots: array) -> bool:
        """Whether the file is exactly ``slots``, one line each, in this order, with these indexes."""
        ix = self._index
        if len(slots) != len(ix):
            return False
        off, idx = ix.offset, ix.index
        last = -1
        for i, s in enumerate(slots):
            if off[s] <= last or idx[s] != i:
                return False
            last = off[s]
        return True

    def close(self) -> None:
        """Stop appending and let go of the file (reading reopens it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._close_reader()

    def _close_reader(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None

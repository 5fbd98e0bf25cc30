"""report.html's own process, alive while the run's rows run.

A big run's page used to be worked out after the last row: the first ``REPORT_ROWS`` records read
back, parsed and taken apart (:class:`~promptweave.report.pagedata.PageData`), then the page
rendered in a process forked from the finishing one. At 10,000 rows that was most of the
finish. :class:`LivePage` forks the page's process before the rows start (the parent is still
small, no model threads yet) and tells it, as rows are stored, where each of the first
``REPORT_ROWS`` lies in ``results.jsonl`` (data position, byte offset, length). The process reads
and takes each row as it comes, on the core the row loop leaves, and keeps them in data order.

At the finish the parent checks that what the process took is exactly what the compacted file
holds (the same count of rows at the same positions, the same bytes: ``RunStore.head_digest``)
and sends the scores and the rows' sacreBLEU statistics. The process works out the significance
tests, hands them to the parent (for the run's saved state) and writes the page, while the
parent writes the other result files. The bootstrap's resampling counts (the tests' biggest
cost) are drawn while the rows run, for as many segments as the page will have (one system
whose every row is scored: as many as its rows), and again as the finish starts if the rows
say otherwise. Any doubt (a row out of place, a process gone, a parse error) and the finish
does what it did before: it reads the rows itself
(:class:`~promptweave.pipelines.finish._PageRows`).

Messages (both ways) are a 9-byte head (kind, payload length) and a payload:

- ``K`` path: open the results file (answer ``k``: its device and inode, to be compared; then
  ``V``: the package versions, JSON, read meanwhile)
- ``R`` int64 triples (position, offset, length): rows stored
- ``E`` (count, sum of lengths): no more rows; answer ``O`` when the rows taken are exactly
  these, else ``X`` (why not)
- ``G`` pickled (run directory, scores, page spec, statistics per metric and row key): work out
  the tests and answer ``T`` (JSON; empty if they failed), then write the page and answer ``D``
  (done: the process exits; the parent waits for that later)
- anything else, or the socket's end: leave without writing
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import logging
import os
import pickle
import signal
import socket
import struct
import time
from array import array
from pathlib import Path
from typing import Any

from ..childproc import kill_and_reap

_HEAD = struct.Struct("<cQ")
BATCH = 128  # rows per message: the process keeps up with the last rows too
#: the page's process is background work while the rows run: when the cores are contended, the
#: row loop goes first (a 10,000-row run's loop was ~5% faster at 10 than at 0)
NICE = 10
#: rows the process may be behind (bytes of row messages not yet taken by its socket): past it,
#: it is dropped and the finish reads the rows itself; the row loop never waits for it
BEHIND = 4 << 20
#: seconds the parent waits on the process at most (it answers in milliseconds): one that stalls
#: (stopped, swapped out) is dropped and the finish reads the rows itself
TIMEOUT = 120.0
_PARENT_ENDS: list[socket.socket] = []
_LATE: list[int] = []  # page processes that said they are done, not waited for yet


log = logging.getLogger("promptweave.report")


def _close_parent_ends() -> None:
    """In any forked child (the page's process, the statistics workers): the parent's ends of
    the page's sockets are not theirs. Held open there, the page's process would not see its
    parent go away."""
    for s in _PARENT_ENDS:
        with contextlib.suppress(OSError):
            s.close()
    _PARENT_ENDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_parent_ends)


def reap_late(block: bool = False) -> None:
    """Wait for the page processes that said they were done (:meth:`LivePage.wait` does not
    wait for a process's exit, which takes ~10-30 ms here: its memory given back). Each is
    waited for at the next page's start, as ``multiprocessing`` reaps its finished children at
    the next process's start; a process that exits first leaves them to the system. ``block``:
    wait for them to end (they are ending)."""
    for pid in list(_LATE):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _LATE.remove(pid)


class PageGone(Exception):
    """The page's process went away, or answered out of turn."""


def _send(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    head = _HEAD.pack(kind, len(payload))
    if len(payload) > 1 << 16:  # not copied into one buffer with its head
        sock.sendall(head)
        sock.sendall(payload)
    else:
        sock.sendall(head + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise PageGone("the other end closed")
        got += k
    return buf


def _recv(sock: socket.socket) -> tuple[bytes, bytes | bytearray]:
    kind, n = _HEAD.unpack(_recv_exact(sock, _HEAD.size))
    return kind, _recv_exact(sock, n) if n else b""


class LivePage:
    """The parent's handle on the page's process (see the module)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock
        self._rows = array("q")
        self._out = bytearray()  # row messages its socket did not take yet
        self.alive = True

    # ------------------------------------------------------------------ the parent's side
    @classmethod
    def start(cls, spec: Any, rows: int = 0) -> "LivePage | None":
        """Fork the page's process (``spec``: the :class:`PageSpec` of every step as a judge; the
        finish narrows it; ``rows``: how many the page will have). ``None`` where there is no
        ``fork``."""
        if not hasattr(os, "fork") or not hasattr(socket, "socketpair"):
            return None
        reap_late()
        try:
            mine, theirs = socket.socketpair()
        except OSError:
            return None
        _PARENT_ENDS.append(mine)
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            _PARENT_ENDS.remove(mine)
            mine.close()
            theirs.close()
            return None
        if pid == 0:  # the page's process (the fork hook closed the parent's end)
            code = 1
            try:
                from ..childproc import die_with_parent

                die_with_parent(parent)  # (it would also see its socket close)
                with contextlib.suppress(OSError, AttributeError):
                    os.nice(NICE)  # the row loop first
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
                gc.disable()  # short-lived, and its rows hold no cycles: no walks over them
                code = _Child(theirs, spec, rows).serve()
            except BaseException:  # noqa: BLE001 - the parent falls back to reading the rows
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        mine.settimeout(TIMEOUT)
        return cls(pid, mine)

    def _fail(self, why: str) -> None:
        if self.alive:
            log.debug("report.html's process dropped: %s", why)
        self.stop()

    def open_file(self, path: Path) -> None:
        """The results file the rows will be in: the process opens it now (and keeps it open: the
        compaction at the end of the loop writes a new one) and says which file it holds."""
        if not self.alive:
            return
        try:
            _send(self.sock, b"K", os.fsencode(path))
            kind, payload = _recv(self.sock)
            st = os.stat(path)
            if kind != b"k" or bytes(payload) != struct.pack("<QQ", st.st_dev, st.st_ino):
                raise PageGone("it opened another file")
        except (OSError, PageGone, struct.error) as exc:
            self._fail(str(exc))

    def row(self, position: int, offset: int, length: int) -> None:
        """A row stored at ``offset`` (``length`` bytes without the newline)."""
        if self.alive:
            self._rows.extend((position, offset, length))
            if len(self._rows) >= 3 * BATCH:
                self.flush()

    def flush(self) -> None:
        """Hand the rows to the socket as far as it takes them now (never waiting)."""
        if not self.alive or not self._rows:
            return
        data, self._rows = self._rows.tobytes(), array("q")
        self._out += _HEAD.pack(b"R", len(data))
        self._out += data
        sock = self.sock
        try:
            sock.setblocking(False)
            try:
                while self._out:
                    try:
                        n = sock.send(self._out)
                    except (BlockingIOError, InterruptedError):
                        break
                    del self._out[:n]
            finally:
                sock.settimeout(TIMEOUT)
        except OSError as exc:
            self._fail(str(exc))
            return
        if len(self._out) > BEHIND:
            self._fail(f"it fell {len(self._out) // 24} rows behind")

    def _drain(self) -> None:
        """The row messages not sent yet, waiting for them (TIMEOUT): before any other message."""
        if self._out:
            data, self._out = bytes(self._out), bytearray()
            self.sock.sendall(data)

    def end_rows(self, digest: tuple[int, int] | None) -> None:
        """No more rows (the run compacted its results): the process is to have taken exactly
        ``digest = (count, bytes)`` of them, positions 0 to ``count - 1``. It answers while the
        parent starts its finish (:meth:`taken`)."""
        self.flush()
        if not self.alive:
            return
        if digest is None:
            self._fail("the results are not one compacted file")
            return
        try:
            self._drain()
            _send(self.sock, b"E", struct.pack("<qq", *digest))
        except OSError as exc:
            self._fail(str(exc))

    def _answer(self, kind: bytes) -> Any:
        """The process's next message, which is to be ``kind``: its payload, or None (and the
        process ended) if it is another (``X``: why not), none comes in TIMEOUT, or the process
        is gone."""
        if not self.alive:
            return None
        try:
            got, payload = _recv(self.sock)
            if got != kind:
                raise PageGone(payload.decode("utf-8", "replace") if got == b"X" else f"answer {got!r}")
            return payload
        except (OSError, PageGone) as exc:
            self._fail(str(exc) or type(exc).__name__)
            return None

    def _json(self, kind: bytes) -> dict[str, Any] | None:
        """A ``kind`` answer whose payload is a JSON object (empty: None); one that does not
        parse ends the process too."""
        payload = self._answer(kind)
        if not payload:
            return None
        try:
            value = json.loads(payload)
        except ValueError as exc:
            self._fail(f"{kind.decode()}: {exc}")
            return None
        return value if isinstance(value, dict) else None

    def versions(self) -> dict[str, str] | None:
        """The package versions the process read as the rows started (it is a fork of this
        process: the same interpreter and packages); None if it did not say."""
        return self._json(b"V")

    def taken(self) -> bool:
        """Whether the process took exactly the file's rows (if not, it is gone)."""
        return self._answer(b"O") is not None

    def render(self, run_dir: Path, scores: dict[str, Any], spec: Any, stats: dict[str, Any]) -> bool:
        """Work out the tests (:meth:`tests`) and write the page; ``stats``: the rows' sacreBLEU
        statistics (metric -> row key -> statistics)."""
        try:
            _send(self.sock, b"G", pickle.dumps((str(run_dir), scores, spec, stats), protocol=pickle.HIGHEST_PROTOCOL))
            return True
        except (OSError, pickle.PicklingError) as exc:
            self._fail(str(exc))
            return False

    def tests(self) -> dict[str, Any] | None:
        """The significance tests the process worked out (``tests_cache``'s form); None if it
        did not say: its tests failed (the page says why, and it ends), or it is gone, stalled
        (no answer in TIMEOUT) or answered out of turn (it is ended now: :meth:`wait` does not
        wait for it again)."""
        return self._json(b"T")

    def wait(self) -> int:
        """0 once the process says it is done (the page written, or said why not; its exit is
        waited for later: :func:`reap_late`); else its exit code once it has ended (1 if it
        cannot be known, or if it was ended after ``TIMEOUT`` seconds without a sign of progress:
        stopped, say)."""
        said = False
        if self.sock is not None:
            try:
                kind, _ = _recv(self.sock)
                said = kind == b"D"
            except TimeoutError:
                return self._stalled()
            except (OSError, PageGone):  # it went away: its exit code says how
                pass
        self._close()
        self.alive = False
        if said:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid:
                return os.waitstatus_to_exitcode(status)
            _LATE.append(self.pid)
            return 0
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else
                return 1
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                return self._stalled()
            time.sleep(0.002)

    def _stalled(self) -> int:
        """A process that gave no sign of progress in TIMEOUT: ended (exit code 1)."""
        log.warning("report.html: its process did not end in %.0f s; stopped", TIMEOUT)
        self._close()
        self.alive = False
        kill_and_reap(self.pid)
        return 1

    def stop(self) -> None:
        """End the process without a page (idempotent)."""
        if self.sock is not None:
            self._close()
            kill_and_reap(self.pid)
        self.alive = False

    def _close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError):
                _PARENT_ENDS.remove(self.sock)
            self.sock.close()
            self.sock = None  # type: ignore[assignment]


def _import_page_modules() -> None:
    """What writing the page imports (some of it only when it gets there)."""
    from ..evaluators import correlation, meta  # noqa: F401
    from ..report import build  # noqa: F401
    from ..report.page import _hash, asset
    from . import finish  # noqa: F401

    for name in ("report.css", "report.js"):  # read and hashed once per process
        _hash(asset(name))


class _Child:
    """The page's process: takes rows in data order as their places arrive."""

    def __init__(self, sock: socket.socket, spec: Any, rows: int) -> None:
        from ..memtune import keep_freed_memory
        from ..report.pagedata import PageData

        keep_freed_memory()  # the page's strings are built, copied and freed: keep their pages
        self.sock, self.spec, self.rows = sock, spec, rows
        self.draws: Any = None
        self.page = PageData(spec)
        self.fd = -1
        self.path = ""
        self.pending: dict[int, tuple[int, int]] = {}  # position -> (offset, length), not yet taken
        self.next = 0  # the next position to take
        self.total = 0  # bytes taken
        self.broken: str | None = None

    def serve(self) -> int:
        while True:
            try:
                kind, payload = _recv(self.sock)
            except PageGone:
                return 0  # the parent is gone or done without a page
            if kind == b"K":
                self.path = os.fsdecode(bytes(payload))
                self.fd = os.open(self.path, os.O_RDONLY)
                st = os.fstat(self.fd)
                _send(self.sock, b"k", struct.pack("<QQ", st.st_dev, st.st_ino))
                # now, while the run starts, not while the finish waits: what writing the page
                # imports, and the package versions the manifest lists (this is a fork of the
                # parent: the same interpreter and packages)
                _import_page_modules()
                from .finish import package_versions

                _send(self.sock, b"V", json.dumps(package_versions()).encode("utf-8"))
                if self.spec.group_by is None:  # one system: as many segments as rows, if all are scored
                    self._draw(self.rows)
            elif kind == b"R":
                self._rows(payload)
            elif kind == b"E":
                count, total = struct.unpack("<qq", payload)
                why = self.broken or (None if (self.next, self.total) == (count, total) and not self.pending
                                      else f"took {self.next} rows ({self.total} bytes), the file has "
                                           f"{count} ({total} bytes)")
                if why is not None:
                    _send(self.sock, b"X", why.encode("utf-8", "replace")[:2000])
                    return 0
                _send(self.sock, b"O")
                # while the parent works out the scores: the draws for the segments there are,
                # if not those drawn ahead; the page's bulk
                from ..report.build import draw_size

                self._draw(draw_size(self.page))
                self.page.blob_head()
            elif kind == b"G":
                return self._write(*pickle.loads(payload))
            else:
                return 0

    def _draw(self, n: int) -> None:
        """The bootstrap's counts for ``n`` segments, drawn now (:class:`~..report.stats.Draws`
        keeps the last size drawn; the tests draw afresh for any other)."""
        from ..report.stats import DEFAULT_SAMPLES, Draws, seed_from_env

        try:
            seed = seed_from_env()
        except Exception:  # noqa: BLE001 - a bad seed is the tests' to report
            return
        if n <= 0 or seed is None:  # no seed: every draw is fresh, as in sacrebleu
            return
        if self.draws is None:
            self.draws = Draws()
        self.draws.get(seed, n, DEFAULT_SAMPLES["bs"])

    def _rows(self, payload: bytes) -> None:
        triples = array("q")
        triples.frombytes(payload)
        pending = self.pending
        for k in range(0, len(triples), 3):
            pending[triples[k]] = (triples[k + 1], triples[k + 2])
        if self.broken is not None or self.next not in pending:
            return
        ready = []
        while self.next in pending:
            ready.append((self.next, *pending.pop(self.next)))
            self.next += 1
        try:
            self._take(ready)
        except Exception as exc:  # noqa: BLE001 - said at the end; the parent reads the rows itself
            self.broken = f"{type(exc).__name__}: {exc}"

    def _take(self, ready: list[tuple[int, int, int]]) -> None:
        """Rows in data order; those back to back in the file are read with one call."""
        from ..report.pagedata import page_record

        spans: list[list[int]] = []  # [start, stop) of the file
        for _, off, n in sorted(ready, key=lambda r: r[1]):
            if spans and spans[-1][1] == off:
                spans[-1][1] = off + n + 1
            else:
                spans.append([off, off + n + 1])
        starts, bufs = [], []
        for start, stop in spans:
            buf = os.pread(self.fd, stop - start, start)
            if len(buf) != stop - start:
                raise ValueError(f"{self.path}: bytes {start}:{stop} are not there")
            starts.append(start)
            bufs.append(buf)
        for pos, off, n in ready:
            k = bisect.bisect_right(starts, off) - 1
            raw = bufs[k][off - starts[k]: off - starts[k] + n + 1]
            if raw[-1:] != b"\n":
                raise ValueError(f"{self.path}: the row at byte {off} does not end its line")
            rec = page_record(raw[:-1], f"{self.path} (row {pos + 1})")
            if rec.get("index") != pos:
                raise ValueError(f"{self.path}: the row at byte {off} is not row {pos}")
            self.page.add(rec)
            self.total += n

    def _write(self, run_dir: str, scores: dict[str, Any], spec: Any, stats: dict[str, Any]) -> int:
        from .finish import _write_html

        page = self.page if self.page.restrict(spec) else None  # else the page reads the rows itself
        told: list[int] = []

        def to_parent(tests: dict[str, Any]) -> None:
            told.append(1)
            _send(self.sock, b"T", json.dumps(tests, default=str).encode("utf-8"))
        # a page that cannot be written is said once, here (as a forked page's process does)
        _write_html(Path(run_dir), scores, stats, tests_to=to_parent, draws=self.draws, page=page)
        with contextlib.suppress(OSError):
            if not told:  # the page failed before its tests: the parent is not to wait for them
                _send(self.sock, b"T")
            _send(self.sock, b"D")  # done: the parent need not wait for this process's exit
        return 0

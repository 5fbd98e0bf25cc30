"""Scores that accumulate while the rows run, so the finish phase has almost nothing left to do.

A :class:`~.scoring.RunTally` must see the records in data order (corpus statistics are summed
in that order, ``scores.json`` lists segments in it). Rows finish in any order, so
:class:`LiveTally` keeps a cursor over the data positions: a finished row at the cursor is
tallied at once, together with every row behind it that is ready (rows kept from an earlier run
are read back from the store as the cursor passes them). Rows that finish ahead of the cursor wait in memory, up to
``MAX_WAITING`` of them; past that they are dropped from memory and read back from the store
when the cursor reaches them, so one slow row cannot make memory grow with the run.

sacreBLEU statistics are computed in chunks on a process pool with one job at a time while the
run goes on (the row loop keeps the other core), and on every worker at :meth:`finish`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import scoring
from .scoring import RunTally

MAX_WAITING = 4096


class LivePage:
    """report.html's rows (the first ``limit`` records in data order) taken by a statistics
    worker while the run goes on (:func:`promptweave.report.pagedata.page_chunk`, ``CHUNK``
    records a job), so that the finish neither reads them back nor walks them: a 10,000-row
    run's finish spent ~0.15 s reading its page's rows and ~0.25 s more walking them in its two
    processes. The finish checks the result against the compacted store (:meth:`result`); any
    doubt and the page reads its rows from the file as before."""

    CHUNK = 2000

    def __init__(self, pool: Any, spec: Any, limit: int) -> None:
        self.pool, self.spec, self.limit = pool, spec, limit
        self.taken = 0  # records given so far
        self.lines: list[bytes] = []
        self.jobs: list[Any] = []
        self.failed = False

    def add(self, line: bytes, left: int) -> None:
        """The next record's line; ``left``: how many records the run has after it. Near the
        end the jobs are smaller, and the last one is left to :meth:`result`, which takes it
        here while the workers compute the last statistics."""
        if self.taken >= self.limit or self.failed:
            return
        self.taken += 1
        self.lines.append(line)
        if left and len(self.lines) >= (self.CHUNK if left >= self.CHUNK else scoring.TAIL_CHUNK):
            self._submit()

    def _submit(self) -> None:
        from ..report.pagedata import page_chunk

        if not self.lines:
            return
        first = self.taken - len(self.lines)
        try:
            self.jobs.append(self.pool.submit(page_chunk, self.spec, self.lines, first))
        except RuntimeError:  # the pool is going away: the page reads its rows itself
            self.failed = True
        self.lines = []

    def result(self, positions: Callable[[str], int | None], total: int) -> Any:
        """The merged page data, if every job gave its part and the parts are the first
        ``min(limit, total)`` records of the compacted run, each at the ``index`` the store
        gives its key (``positions``); else None. The records not handed to a worker yet are
        taken here (the workers are busy with the last statistics)."""
        from ..report.pagedata import page_chunk

        if self.failed or self.taken != min(self.limit, total):
            return None
        merged = None
        try:
            rest = page_chunk(self.spec, self.lines, self.taken - len(self.lines)) if self.lines else None
            for part in [job.result() for job in self.jobs] + ([rest] if rest is not None else []):
                if merged is None:
                    merged = part
                else:
                    merged.merge(part)
        except Exception:  # noqa: BLE001 - a worker gone, a record it could not read: read them here
            return None
        finally:
            self.jobs, self.lines = [], []
        if merged is None or len(merged.labels) != self.taken:
            return None
        if any(positions(key) != k for k, (key, _, _) in enumerate(merged.labels)):
            return None
        return merged


class LiveTally:
    """Feed with :meth:`add` (any order); :meth:`finish` returns the complete :class:`RunTally`."""

    def __init__(self, tally: RunTally, keys: Sequence[str], todo: bytearray,
                 read: Callable[[str], tuple[dict[str, Any], bytes] | None], page: LivePage | None = None) -> None:
        """``read``: a stored record and its line, by key. ``page``: where report.html's rows go."""
        self.tally, self.keys, self.todo, self.read, self.page = tally, keys, todo, read, page
        self.cursor = 0
        self.arrived = bytearray(len(keys))
        self.waiting: dict[int, tuple[dict[str, Any], bytes]] = {}

    def add(self, record: dict[str, Any], line: bytes) -> None:
        """A finished row (its ``index`` is its data position) and its line in the store."""
        i = record["index"]
        self.arrived[i] = 1
        if i != self.cursor:
            if len(self.waiting) >= MAX_WAITING:
                self.waiting.clear()  # they are in the store: read back when the cursor gets there
            self.waiting[i] = (record, line)
            return
        self._tally(record, line)
        self.cursor += 1
        self._advance(final=False)
        self.tally.poll()

    def _tally(self, record: dict[str, Any], line: bytes) -> None:
        left = len(self.keys) - self.cursor - 1  # rows after this one
        # near the end, smaller statistics jobs: less is left to compute when the rows end
        self.tally.chunk = scoring.TAIL_CHUNK if left < scoring.CHUNK else scoring.CHUNK
        self.tally.add(record)
        if self.page is not None:
            self.page.add(line, left)

    def _advance(self, final: bool) -> None:
        keys, todo, arrived, waiting = self.keys, self.todo, self.arrived, self.waiting
        n = len(keys)
        while self.cursor < n:
            i = self.cursor
            if todo[i] and not arrived[i]:
                if not final:
                    return
                got = self.read(keys[i])  # a row the run did not finish (it stopped early)
            elif todo[i]:
                got = waiting.pop(i, None) or self.read(keys[i])
            else:
                got = self.read(keys[i])  # kept from an earlier run
            if got is not None:
                self._tally(*got)
            self.cursor += 1

    def finish(self, meanwhile: Callable[[], None] | None = None) -> RunTally:
        """Tally every row not yet tallied (read from the store) and wait for the statistics;
        ``meanwhile`` runs while the statistics workers finish the last jobs."""
        self.waiting.clear()
        self._advance(final=True)
        self.tally.finish(meanwhile)
        return self.tally

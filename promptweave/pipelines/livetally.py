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

from .scoring import CHUNK, TAIL_CHUNK, RunTally

MAX_WAITING = 4096


class LiveTally:
    """Feed with :meth:`add` (any order); :meth:`finish` returns the complete :class:`RunTally`."""

    def __init__(self, tally: RunTally, keys: Sequence[str], todo: bytearray,
                 read: Callable[[str], dict[str, Any] | None]) -> None:
        self.tally, self.keys, self.todo, self.read = tally, keys, todo, read
        self.cursor = 0
        self.arrived = bytearray(len(keys))
        self.waiting: dict[int, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        """A finished row (its ``index`` is its data position)."""
        i = record["index"]
        self.arrived[i] = 1
        if i != self.cursor:
            if len(self.waiting) >= MAX_WAITING:
                self.waiting.clear()  # they are in the store: read back when the cursor gets there
            self.waiting[i] = record
            return
        self.tally.add(record)
        self.cursor += 1
        self._advance(final=False)
        left = len(self.keys) - self.cursor
        if left <= 2 * CHUNK:  # the finish waits for the last job: a small one
            # jobs of the last rows come often: both workers take them (with one, the jobs
            # queued up behind it, and the finish waited for them all); the very last are smaller
            self.tally.chunk = TAIL_CHUNK if left > 2 * TAIL_CHUNK else TAIL_CHUNK // 2
            self.tally.live = 2
        self.tally.poll()

    def _advance(self, final: bool) -> None:
        keys, todo, arrived, waiting = self.keys, self.todo, self.arrived, self.waiting
        n = len(keys)
        while self.cursor < n:
            i = self.cursor
            if todo[i] and not arrived[i]:
                if not final:
                    return
                rec = self.read(keys[i])  # a row the run did not finish (it stopped early)
            elif todo[i]:
                rec = waiting.pop(i, None) or self.read(keys[i])
            else:
                rec = self.read(keys[i])  # kept from an earlier run
            if rec is not None:
                self.tally.add(rec)
            self.cursor += 1

    def finish(self, meanwhile: Callable[[], None] | None = None) -> RunTally:
        """Tally every row not yet tallied (read from the store) and wait for the statistics;
        ``meanwhile`` runs while the statistics workers finish the last jobs."""
        self.waiting.clear()
        self._advance(final=True)
        self.tally.finish(meanwhile)
        return self.tally

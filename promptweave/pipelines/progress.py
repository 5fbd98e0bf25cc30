"""A progress bar with rows/s, ETA, tokens and cache hits (rich; a plain line when not a TTY)."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..models.runtime import Ledger


class RunProgress:
    def __init__(self, total: int, done: int, ledgers: dict[str, Ledger], enabled: bool = True) -> None:
        self.total, self.done, self.ledgers = total, done, ledgers
        self.enabled = enabled
        self.errors = 0
        self._start = time.perf_counter()
        self._started_at = done
        self._tty = sys.stderr.isatty()
        self._last_line = 0.0
        self._last_refresh = 0.0
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RunProgress:
        if self.enabled and self._tty:
            self._progress = Progress(
                TextColumn("[bold]rows"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[usage]}"),
                console=Console(stderr=True), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("run", total=self.total, completed=self.done,
                                                 rate="", usage="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(None, None, None)
        elif self.enabled:
            self._line(force=True)

    def advance(self, ok: bool = True) -> None:
        self.done += 1
        if not ok:
            self.errors += 1
        if self._progress is not None:
            # rich redraws 10 times a second anyway; updating it per row cost more than the row
            now = time.perf_counter()
            if now - self._last_refresh >= 0.1 or self.done >= self.total:
                self._last_refresh = now
                self._refresh()
        elif self.enabled:
            self._line()

    def _stats(self) -> tuple[str, str]:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = (self.done - self._started_at) / elapsed
        tokens = sum(lg.prompt_tokens + lg.completion_tokens for lg in self.ledgers.values())
        hits = sum(lg.cache_hits for lg in self.ledgers.values())
        usage = f"{tokens:,} tok · {hits:,} cached" + (f" · {self.errors} errors" if self.errors else "")
        return f"{rate:.1f} rows/s", usage

    def _refresh(self) -> None:
        assert self._progress is not None
        rate, usage = self._stats()
        self._progress.update(self._task, completed=self.done, rate=rate, usage=usage)

    def _line(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_line < 5.0 and self.done < self.total:
            return
        self._last_line = now
        rate, usage = self._stats()
        print(f"rows {self.done}/{self.total} · {rate} · {usage}", file=sys.stderr, flush=True)

"""The default store: one SQLite file in WAL mode (readers never block the writer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .store import SQLStore, StoreUnavailable


class SQLiteStore(SQLStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses no committed transaction's
        self.conn.execute("PRAGMA busy_timeout=30000")  # integrity, only (at most) the last ones on power loss
        self._create_schema()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        # IMMEDIATE takes the write lock at BEGIN, so a version check and its insert cannot be
        # split by a writer in another process
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked by another process past busy_timeout
            raise StoreUnavailable(f"SQLite: {exc}") from None
        try:
            yield self.conn.execute
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        yield self.conn.execute  # autocommit: each SELECT is its own snapshot

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

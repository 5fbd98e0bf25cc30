"""The PostgreSQL store (psycopg 3), the same SQL and interface as the SQLite one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import MissingDependency, PromptweaveError
from .store import SQLStore


class PostgresStore(SQLStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependency("psycopg", "postgres", exc) from None
        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            # the URL may hold a password: never echo it
            raise PromptweaveError(f"store: cannot connect to PostgreSQL: {' '.join(str(exc).split())[:200]}") from None
        with self._lock:
            # one schema creation at a time across processes (CREATE TABLE IF NOT EXISTS races on pg_type)
            self.conn.execute("SELECT pg_advisory_lock(727274)")
            try:
                self._create_schema_unlocked()
            finally:
                self.conn.execute("SELECT pg_advisory_unlock(727274)")

    def _create_schema_unlocked(self) -> None:
        with self.conn.transaction():
            self._setup_schema(lambda sql, params=(): self.conn.execute(self._sql(sql), params))

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.conn.transaction():
            # serialise writers of the whole store for the transaction: the version check and
            # the insert then see one consistent state (the primary key is the backstop)
            self.conn.execute("SELECT pg_advisory_xact_lock(727273)")
            yield self.conn.execute

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        yield self.conn.execute  # autocommit: each SELECT is its own snapshot

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

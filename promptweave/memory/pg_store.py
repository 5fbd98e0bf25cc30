"""The PostgreSQL store (psycopg 3), the same SQL and interface as the SQLite one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from ..errors import MissingDependency, PromptweaveError
from .store import SQLStore, StoreUnavailable

_WRITE_LOCK = 727273  # one writer of the whole store at a time (see _transaction)
_SCHEMA_LOCK = 727274


class PostgresStore(SQLStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependency("psycopg", "postgres", exc) from None
        self._psycopg = psycopg
        self._url = url
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            # the URL may hold a password: never echo it
            raise PromptweaveError(f"store: cannot connect to PostgreSQL: {_brief(exc)}") from None
        with self._lock:
            # one schema creation at a time across processes (CREATE TABLE IF NOT EXISTS races on pg_type)
            self.conn.execute(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})")
            try:
                self._create_schema_unlocked()
            finally:
                self.conn.execute(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})")

    def _create_schema_unlocked(self) -> None:
        with self.conn.transaction():
            self._setup_schema(lambda sql, params=(): self.conn.execute(self._sql(sql), params))

    # A server restart, a failover or an idle-connection kill closes the connection. Without a
    # new one every later call failed ("the connection is lost") until the process restarted.
    # A call that finds the connection closed opens a new one; a statement that fails because
    # the connection was lost before anything of its transaction was done is sent again on a
    # new one; a loss later in a transaction (its outcome unknown) is StoreUnavailable, 503.
    def _connected(self) -> Any:
        if self.conn.closed:
            try:
                self.conn = self._psycopg.connect(self._url, autocommit=True)
            except self._psycopg.Error as exc:
                raise StoreUnavailable(f"cannot reach PostgreSQL: {_brief(exc)}") from None
        return self.conn

    def _retry_once(self, first: Callable[[], Any]) -> Any:
        """``first()``; once more on a new connection if it failed because the connection was lost."""
        try:
            return first()
        except self._psycopg.OperationalError as exc:
            if not self.conn.closed:
                raise StoreUnavailable(f"PostgreSQL: {_brief(exc)}") from None
        try:
            return first()
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL: {_brief(exc)}") from None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        def begin() -> ExitStack:
            stack = ExitStack()
            conn = self._connected()
            try:
                stack.enter_context(conn.transaction())
                # serialise writers of the whole store for the transaction: the version check and
                # the insert then see one consistent state (the primary key is the backstop)
                conn.execute(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
            except BaseException:
                _close_quietly(stack, self._psycopg)
                raise
            return stack

        stack = self._retry_once(begin)
        try:
            with stack:
                yield self.conn.execute
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL: {_brief(exc)}; the change may not have been made") from None

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        def execute(sql: str, params: Any = ()) -> Any:  # autocommit: each SELECT is its own snapshot
            return self._retry_once(lambda: self._connected().execute(sql, params))

        yield execute

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _close_quietly(stack: ExitStack, psycopg: Any) -> None:
    try:
        stack.close()
    except psycopg.Error:
        pass  # the connection is gone: there is no transaction left to end

"""The PostgreSQL store outlives its connection: after a server restart, a failover or an idle
kill (here: pg_terminate_backend), the next call opens a new connection instead of failing
"the connection is lost" until the process restarts."""

from __future__ import annotations

import pytest

from promptweave.memory import StoreUnavailable, open_store
from promptweave.memory.dedup import new_turns

from .conftest import _fresh_pg


def _kill(url: str, store) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,))


@pytest.fixture
def url(pg_url: str) -> str:
    return _fresh_pg(pg_url)


def test_writes_and_reads_go_on_after_the_connection_is_killed(url: str) -> None:
    store = open_store(url)
    try:
        store.append_turns("ns", "s", [("user", "before")])
        _kill(url, store)
        assert store.append_turns("ns", "s", [("user", "after")])[0].seq == 2  # a write first
        _kill(url, store)
        assert [t.content for t in store.turns("ns", "s")] == ["before", "after"]  # a read first
        _kill(url, store)
        view = store.begin_reply("ns", "s", [("user", "and a reply")], select_new=new_turns, context_tokens=100)
        assert [t.content for t in view.context] == ["before", "after", "and a reply"]
    finally:
        store.close()


def test_an_unreachable_server_is_store_unavailable_not_a_driver_error(url: str) -> None:
    store = open_store(url)
    try:
        store._url = url.rsplit(":", 1)[0] + ":1/nowhere"  # where a restarted server is not (yet)
        _kill(url, store)
        with pytest.raises(StoreUnavailable, match="cannot reach PostgreSQL"):
            store.append_turns("ns", "s", [("user", "lost?")])
        with pytest.raises(StoreUnavailable):
            store.session("ns", "s")
        store._url = url  # the server is back
        assert store.append_turns("ns", "s", [("user", "back")])[0].seq == 1
    finally:
        store.close()

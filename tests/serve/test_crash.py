"""kill -9 of the server during a memory update: after a restart the memory is the last
committed version, the store is intact, and the interrupted update is redone. On SQLite and on a
real PostgreSQL server (skipped, with the reason, where none can be started)."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.memory.conftest import _fresh_pg

from .server import serve, serve_config, wait_for_version

pytest.importorskip("fastapi")


def _say(root: str, text: str) -> None:
    r = httpx.post(f"{root}/v1/chat/completions", timeout=30,
                   json={"user": "u", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text


def _rows(store: str | None, tmp: Path) -> tuple[list[tuple[Any, ...]], int]:
    """(memory rows, pending_upto), read straight from the database the killed server left."""
    memory = "SELECT version, text, turn_from, turn_to FROM pw_memory ORDER BY version"
    pending = "SELECT pending_upto FROM pw_sessions"
    if store is None:
        db = sqlite3.connect(tmp / "memory.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return db.execute(memory).fetchall(), db.execute(pending).fetchone()[0]
        finally:
            db.close()
    import psycopg

    with psycopg.connect(store, autocommit=True) as conn:
        # no transaction of the killed server is left open, so nothing half-written can appear later
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'").fetchone()[0] == 0
        return [tuple(r) for r in conn.execute(memory).fetchall()], conn.execute(pending).fetchone()[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_update_keeps_last_version_and_redoes_the_update(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    store = _fresh_pg(request.getfixturevalue("pg_url")) if backend == "postgres" else None
    slow = serve_config(tmp_path, update_delay=1.5, store=store)
    with serve(slow) as s:
        _say(s.root, "my name is Ada")
        httpx.post(f"{s.root}/v1/sessions/u/end")
        wait_for_version(s.root, "u", 1)
        _say(s.root, "I live in Lyon")
        httpx.post(f"{s.root}/v1/sessions/u/end")
        time.sleep(0.5)  # the second update's model call is in flight
        assert httpx.get(f"{s.root}/healthz").json()["updates_running"] == 1
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    rows, pending_upto = _rows(store, tmp_path)
    assert rows == [(1, "The user's name is Ada.", 1, 2)]  # the last committed version, nothing half-written
    assert pending_upto == 4  # the request survived

    with serve(serve_config(tmp_path, store=store)) as s:  # restart on the same store (a fast model this time)
        body = wait_for_version(s.root, "u", 2)
        assert body["memory"]["text"] == "The user's name is Ada. The user lives in Lyon."
        assert (body["memory"]["turn_from"], body["memory"]["turn_to"]) == (3, 4)
        assert [v["version"] for v in body["versions"]] == [1, 2] and body["update_pending"] is False
        assert len(body["turns"]) == 4
    assert "redoing 1 memory update" in s.log()

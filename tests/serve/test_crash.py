"""kill -9 of the server during a memory update: after a restart the memory is the last
committed version, the store is intact, and the interrupted update is redone."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .server import serve, serve_config, wait_for_version

pytest.importorskip("fastapi")


def _say(root: str, text: str) -> None:
    r = httpx.post(f"{root}/v1/chat/completions", timeout=30,
                   json={"user": "u", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text


def test_kill_9_during_update_keeps_last_version_and_redoes_the_update(tmp_path: Path) -> None:
    slow = serve_config(tmp_path, update_delay=1.5)
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

    db = sqlite3.connect(tmp_path / "memory.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT version, text, turn_from, turn_to FROM pw_memory ORDER BY version").fetchall()
    assert rows == [(1, "The user's name is Ada.", 1, 2)]  # the last committed version, nothing half-written
    assert db.execute("SELECT pending_upto FROM pw_sessions").fetchone()[0] == 4  # the request survived
    db.close()

    with serve(serve_config(tmp_path)) as s:  # restart on the same store (a fast model this time)
        body = wait_for_version(s.root, "u", 2)
        assert body["memory"]["text"] == "The user's name is Ada. The user lives in Lyon."
        assert (body["memory"]["turn_from"], body["memory"]["turn_to"]) == (3, 4)
        assert [v["version"] for v in body["versions"]] == [1, 2] and body["update_pending"] is False
        assert len(body["turns"]) == 4
    assert "redoing 1 memory update" in s.log()

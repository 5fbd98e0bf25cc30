"""``promptweave serve`` on PostgreSQL keeps answering after the database drops its connections
(a restart, a failover, an idle kill): before, every later request was a 500 until the server
process was restarted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import _fresh_pg
from .server import serve, serve_config

pytest.importorskip("fastapi")


def test_serve_answers_after_postgres_drops_its_connections(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    url = _fresh_pg(pg_url)
    chat = {"user": "pg", "messages": [{"role": "user", "content": "hi"}]}
    with serve(serve_config(tmp_path, store=url)) as s:
        assert httpx.post(f"{s.root}/v1/chat/completions", json=chat, timeout=30).status_code == 200
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert killed >= 1
        r = httpx.post(f"{s.root}/v1/chat/completions", json={**chat, "messages": [{"role": "user", "content": "again"}]},
                       timeout=30)
        assert r.status_code == 200, r.text
        turns = httpx.get(f"{s.root}/v1/sessions/pg", timeout=30).json()["turns"]
        assert [t["content"] for t in turns] == ["hi", "You said: hi", "again", "You said: again"]
    assert "Traceback" not in s.log()

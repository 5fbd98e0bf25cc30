"""200 concurrent requests over 50 sessions against a real server: every turn stored once, in
order, each reply after its own user turn, and one memory version per committed update."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.memory.conftest import _fresh_pg

from .server import serve, serve_config

pytest.importorskip("fastapi")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_200_concurrent_requests_over_50_sessions(tmp_path: Path, backend: str,
                                                  request: pytest.FixtureRequest) -> None:
    store = _fresh_pg(request.getfixturevalue("pg_url")) if backend == "postgres" else None
    cfg = serve_config(tmp_path, memory={"policy": "every_n_turns", "every_n_turns": 2}, store=store)
    with serve(cfg) as s:
        async def main() -> None:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=s.root, limits=limits, timeout=60) as client:
                async def one(session: int, k: int) -> tuple[int, int, str]:
                    text = f"message {k} of s{session}" + (" my name is Ada" if k == 0 else "")
                    r = await client.post("/v1/chat/completions", json={
                        "model": "m", "user": f"s{session}", "messages": [{"role": "user", "content": text}]})
                    assert r.status_code == 200, r.text
                    return session, k, r.json()["choices"][0]["message"]["content"]

                results = await asyncio.gather(*(one(i, k) for k in range(4) for i in range(50)))
                assert len(results) == 200
                for session, k, reply in results:
                    assert reply == f"You said: message {k} of s{session}" + (" my name is Ada" if k == 0 else "")
        asyncio.run(main())

        deadline = time.monotonic() + 30
        while httpx.get(f"{s.root}/healthz").json()["updates_running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(f"{s.root}/healthz").json()
        committed = health["updates_committed"]
        assert health["usage"]["default"]["requests"] == 200  # every reply through the runtime's ledger
        assert health["usage"]["memory"]["requests"] == committed
        versions_total = 0
        for i in range(50):
            body = httpx.get(f"{s.root}/v1/sessions/s{i}").json()
            turns = body["turns"]
            assert [t["seq"] for t in turns] == list(range(1, 9))
            assert [t["role"] for t in turns] == ["user", "assistant"] * 4
            users = [t["content"] for t in turns[::2]]
            assert sorted(users) == sorted(f"message {k} of s{i}" + (" my name is Ada" if k == 0 else "")
                                           for k in range(4))
            for u, a in zip(turns[::2], turns[1::2]):
                assert a["content"] == f"You said: {u['content']}"  # each reply follows its own turn
            ranges = [(v["turn_from"], v["turn_to"]) for v in body["versions"]]
            assert ranges and ranges[0][0] == 1 and ranges[-1][1] == 8
            assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))  # no overlap, no gap
            assert [v["version"] for v in body["versions"]] == list(range(1, len(ranges) + 1))
            assert "Ada" in body["memory"]["text"]
            versions_total += len(ranges)
        assert versions_total == committed
    assert "Traceback" not in s.log()

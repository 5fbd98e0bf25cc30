"""A backend that is down for a while (restarting, not started yet): each request meanwhile is a
502 with the reason, and the server answers again as soon as the backend is back; it never
stays down the way a pipeline run stops for good after its circuit breaker trips."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import yaml

from promptweave.testing import serve as start_backend

from .server import serve

pytest.importorskip("fastapi")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_again_once_the_backend_is_back(tmp_path: Path) -> None:
    port = _free_port()
    model = {"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "cache": False,
             "max_retries": 0}
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"model": model, "store": f"sqlite:///{tmp_path / 'memory.db'}",
                                   "server": {"keys_env": None, "port": 0}}))
    with serve(cfg) as s:
        def say(text: str) -> httpx.Response:
            return httpx.post(f"{s.root}/v1/chat/completions", timeout=30,
                              json={"user": "ada", "messages": [{"role": "user", "content": text}]})

        for k in range(7):  # more refused connections in a row than a pipeline's breaker allows (5)
            r = say(f"anyone there {k}?")
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "backend_error" and "cannot connect" in r.json()["error"]["message"]
        with start_backend(port=port, reply="back again"):
            r = say("and now?")
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "back again"
        turns = httpx.get(f"{s.root}/v1/sessions/ada").json()["turns"]
        assert [t["content"] for t in turns][-2:] == ["and now?", "back again"]
    assert "Traceback" not in s.log()

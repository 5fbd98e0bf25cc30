"""Start ``promptweave serve`` as a user would (its own process, real uvicorn on loopback)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.memory.scripted import RESPOND_RULES, UPDATE_RULES

REPO = Path(__file__).resolve().parents[2]
# session 3 of the acceptance conversation: the reply quotes the memory the prompt carried
REMEMBER = {"match": r"(?s)\[Previous Memory\] (?!none)([^\n]*)\n.*User: Do you remember me\?\n\[Response\]",
            "reply": r"I remember: \1"}


def serve_config(tmp: Path, *, update_delay: float = 0.0, memory: dict[str, Any] | None = None,
                 keys_env: str | None = None, store: str | None = None, **server: Any) -> Path:
    cfg = {
        "model": {"backend": "scripted", "model": "chat", "cache": False,
                  "options": {"rules": [REMEMBER, RESPOND_RULES[-1]], "default": "OK."}},
        "models": {"memory": {"backend": "scripted", "model": "mem", "cache": False, "max_retries": 0,
                              "options": {"rules": UPDATE_RULES, "default": "none", "delay": update_delay}}},
        "memory": {"update_model": "memory", **(memory or {})},
        "store": store or f"sqlite:///{tmp / 'memory.db'}",
        "server": {"keys_env": keys_env, "port": 0, **server},
    }
    path = tmp / f"serve-{update_delay}-{len(list(tmp.glob('serve-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, stderr: Path) -> None:
        self.proc, self.base_url, self.stderr = proc, base_url, stderr
        self.root = base_url.removesuffix("/v1")

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextmanager
def serve(config: Path, env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[Served]:
    errlog = config.with_suffix(".stderr")
    with open(errlog, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "promptweave", "serve", str(config)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err,
                                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.startswith(b"READY"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start:\n{errlog.read_text(errors='replace')[-3000:]}")
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
        yield Served(proc, line.decode().split()[1], errlog)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_version(root: str, sid: str, version: int, headers: dict[str, str] | None = None,
                     timeout: float = 20.0) -> dict[str, Any]:
    """Poll GET /v1/sessions/{sid} until the memory reaches ``version``."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{root}/v1/sessions/{sid}", headers=headers or {}, timeout=10).json()
        if body.get("memory") and body["memory"]["version"] >= version:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"memory of {sid} did not reach version {version}: {body}")
        time.sleep(0.05)

"""Test aids that need no model: a local OpenAI-compatible server with fault injection.

::

    from promptweave.testing import serve, stats

    with serve(p429=0.1, retry_after=0.2, seed=1) as base_url:   # http://127.0.0.1:PORT/v1
        ...  # point model.base_url at it
        assert stats(base_url)["requests"] == 12

The server runs in its own process (``python -m promptweave.testing.server``) so that its CPU
time never counts against the client under test; it exits with the ``with`` block, and also
when the process that started it dies.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .faults import Faults

__all__ = ["Faults", "configure", "request_log", "serve", "stats"]


def _root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def _call(url: str, payload: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def stats(base_url: str) -> dict[str, Any]:
    """``{"requests": n, "by_status": {"200": n, "429": n, "reset": n, ...}}`` since start or reset."""
    return _call(_root(base_url) + "/stats")  # type: ignore[no-any-return]


def request_log(base_url: str) -> dict[str, Any]:
    """``{"log": {key: [[arrival, sent, outcome, retry_after], ...]}, "texts": {key: last user turn},
    "auth": [sha256 of each Authorization header seen]}``. A key is a hash of the request body, so
    retries of one request share it."""
    return _call(_root(base_url) + "/log")  # type: ignore[no-any-return]


def configure(base_url: str, *, reset: bool = False, **faults: Any) -> dict[str, Any]:
    """Change fault settings of a running server; ``reset=True`` also clears its counters."""
    return _call(_root(base_url) + "/control", {"faults": faults, "reset": reset})  # type: ignore[no-any-return]


def _flags(faults: dict[str, Any]) -> list[str]:
    known = set(Faults.__dataclass_fields__)
    out: list[str] = []
    for name, value in faults.items():
        if name not in known:
            raise TypeError(f"unknown fault setting '{name}'; known: {', '.join(sorted(known))}")
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


@contextmanager
def serve(*, port: int = 0, startup_timeout: float = 20.0, **faults: Any) -> Iterator[str]:
    """Start the fault-injecting server on 127.0.0.1 in a separate process; yield its base URL
    (``http://127.0.0.1:PORT/v1``); stop it on exit. ``faults`` are :class:`Faults` fields."""
    Faults(**faults).check()
    cmd = [sys.executable, "-m", "promptweave.testing.server", "--port", str(port), "--watch-stdin",
           *_flags(faults)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_TESTSERVER_")}
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, env=env)
        try:
            base_url = _wait_ready(proc, startup_timeout, errlog)
            yield base_url
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float, errlog: Any) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(b"READY "):
                return line.split()[1].decode()
            if not line:
                break
        elif proc.poll() is not None:
            break
    errlog.seek(0)
    tail = errlog.read()[-2000:].decode(errors="replace")
    _stop(proc)
    raise RuntimeError(f"test server did not start (exit {proc.returncode}): {tail or line.decode(errors='replace')}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()

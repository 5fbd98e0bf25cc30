"""The Ray executor on a cluster started the way a team starts one: a head by ``ray start --head``
on 127.0.0.1 and a worker joined by ``ray start --address``; ``promptweave run`` connects to it.
``ray stop`` ends it.

The cluster uses token authentication (Ray's secure mode, and the default of ``ray.init`` since
Ray 2.5x) with a token file of its own, so that every process says its mode explicitly: a head
started where ``~/.ray/auth_token`` exists turns token auth on, and a worker told nothing does not,
which was how this fixture broke on Ray 2.60. Ray before token auth ignores these variables."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptweave.testing import serve, stats
from tests.executors.common import report, rows, run_dir
from tests.helpers import REPO, cli, ctrl_c_as_at_a_terminal
from tests.test_faults import make_pipeline

ray = pytest.importorskip("ray", reason="the Ray executor needs: pip install -e '.[ray]'")
RAY_CLI = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_AUTH = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_TOKEN: dict[str, str] = {}  # the cluster's auth variables, set by the fixture


def _env(token: bool = True) -> dict[str, str]:
    """This tree on the path (the actors import it) and the cluster's token, or none at all."""
    env = {k: v for k, v in os.environ.items() if k not in _AUTH}
    return {**env, "PYTHONPATH": str(REPO), **(_TOKEN if token else {})}


def _ray(*args: str) -> None:
    res = subprocess.run([RAY_CLI, *args], capture_output=True, text=True, env=_env(), timeout=180)  # type: ignore[list-item]
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if RAY_CLI is None:
        pytest.skip("the 'ray' command is not installed")
    token = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    _TOKEN.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    addr = f"127.0.0.1:{_free_port()}"
    small = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    try:
        _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={addr.rsplit(':', 1)[1]}",
             "--include-dashboard=false", *small)
        _ray("start", f"--address={addr}", "--node-ip-address=127.0.0.1", *small)
        yield addr
    finally:
        subprocess.run([RAY_CLI, "stop", "--force"], capture_output=True, env=_env(), timeout=120)  # type: ignore[list-item]
        _TOKEN.clear()


def _run(cfg: Path, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("run", str(cfg), "--no-progress", *args, cwd=cfg.parent, env=_env(token), timeout=300)


def test_a_head_and_a_worker_give_the_local_results(tmp_path: Path, address: str) -> None:
    with serve(delay=0.01) as url:
        cfg = make_pipeline(tmp_path, url, 40, model=", max_concurrency: 4",
                            extra="concurrency: 4\nexecutor: {kind: local, actors: 2, chunk_size: 8}\n")
        assert _run(cfg, "--set", f"output={tmp_path / 'local'}").returncode == 0
        res = _run(cfg, "--set", f"output={tmp_path / 'ray'}", "--executor", "ray", "--address", address)
        assert res.returncode == 0, res.stderr
        assert stats(url)["requests"] == 80
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    assert report(tmp_path / "ray") == report(tmp_path / "local")


@pytest.mark.skipif(not hasattr(ray.exceptions, "AuthenticationError"), reason="this Ray has no token authentication")
def test_a_driver_without_the_clusters_token_gets_one_line_naming_it(tmp_path: Path, address: str) -> None:
    with serve(delay=0.0) as url:
        cfg = make_pipeline(tmp_path, url, 4)
        res = _run(cfg, "--executor", "ray", "--address", address, token=False)
        assert stats(url)["requests"] == 0
    assert res.returncode == 2, res.stderr
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "token" in err[0] and "RAY_AUTH_TOKEN" in err[0] and "executor.address" in err[0], err[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_stopping_the_driver_halfway_then_run_again(tmp_path: Path, address: str, sig: int) -> None:
    """SIGKILL, or Ctrl-C (which kills the actors, exits 130), then the same command resumes."""
    n = 200
    with serve(delay=0.05) as url:
        cfg = make_pipeline(tmp_path, url, n, model=", max_concurrency: 4",
                            extra=f"concurrency: 4\nexecutor: {{kind: ray, address: '{address}', actors: 2, "
                                  "num_cpus: 0.5, chunk_size: 8}\n")
        results = tmp_path / "runs"
        proc = subprocess.Popen([sys.executable, "-m", "promptweave", "run", str(cfg), "--no-progress"],
                                cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=ctrl_c_as_at_a_terminal)
        deadline = time.monotonic() + 180
        try:
            while _lines(results) < n // 3:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.01)
            os.kill(proc.pid, sig)
        finally:
            proc.wait(60)
            proc.stderr.close()  # type: ignore[union-attr]
        assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
        assert n // 3 <= _lines(results) < n
        res = _run(cfg)  # the same command again: resumes on the cluster
        assert res.returncode == 0, res.stderr
        assert stats(url)["requests"] <= n + 2 * 8  # at most the two chunks the actors held, paid again
    records = rows(results)
    assert [r["key"] for r in records] == [f"r{i:04d}" for i in range(n)]  # every row, once, in order
    assert all(r["status"] == "ok" for r in records)
    assert _lines(results) == n


def _lines(output: Path) -> int:
    try:
        return (run_dir(output) / "results.jsonl").read_bytes().count(b"\n")
    except (FileNotFoundError, ValueError):
        return 0

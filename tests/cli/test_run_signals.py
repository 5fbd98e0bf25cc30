"""``promptweave run`` when things stop early: Ctrl-C, a native crash in a backend, failed rows.
Every hint it prints is run as printed, and must resume the same run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptweave.testing import configure, serve
from tests.helpers import cli, ctrl_c_as_at_a_terminal, read_jsonl, scripted_pipeline
from tests.test_faults import make_pipeline

PREFIX = "python -m promptweave "  # how tests.helpers.cli starts promptweave, so how hints print it


def _run_printed(line: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command a hint printed (it ends the line), the way a user pastes it into a shell."""
    command = line[line.index(PREFIX):]
    args = shlex.split(command)[3:]  # drop "python -m promptweave": run it with this interpreter
    return cli(*args, cwd=cwd, env=env)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("supervised", ["1", "0"])
def test_ctrl_c_prints_interrupted_and_the_command_that_resumes(tmp_path: Path, supervised: str) -> None:
    # 0.5 s a row: on a starved machine the test may wake seconds late, and the run must not be done by then
    cfg = scripted_pipeline(tmp_path, rows=40, options=", delay: 0.5", extra="concurrency: 1\n")
    args = ["run", str(cfg), "--set", "data.limit=30", "--set", "description=a b 'c'", "--run-id", "ctrlc",
            "--no-progress", "--json"]
    results = tmp_path / "runs" / "scripted" / "ctrlc" / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "promptweave", *args], cwd=tmp_path,
                            env={**os.environ, "PROMPTWEAVE_SUPERVISE": supervised},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + 60
    while _lines(results) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    saved = _lines(results)
    assert 3 <= saved < 30
    assert line.startswith(f"interrupted; {saved} finished rows are saved in ")
    assert line.endswith("resume with: " + PREFIX + shlex.join(args)), line

    resumed = _run_printed(line, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["rows"] == 30 and summary["skipped"] == saved and summary["ran"] == 30 - saved
    assert len(read_jsonl(results)) == 30


_CRASHY = '''
import ctypes, os
from promptweave.models.base import BaseChatModel, Completion


class Crashy(BaseChatModel):
    """Answers like an echo model; with CRASHY=1, its call number ``after + 1`` segfaults in C."""

    def __init__(self, after: int) -> None:
        self.after, self.calls = after, 0
        self.identity = {"backend": "crashy", "model": "echo"}

    async def complete(self, messages, params):
        self.calls += 1
        if os.environ.get("CRASHY") == "1" and self.calls > self.after:
            ctypes.string_at(0)  # reads address 0: a real SIGSEGV, as a native library would die
        return Completion(text="EN: " + str(messages[-1].content), prompt_tokens=1, completion_tokens=1)


def create(cfg):
    return Crashy(int(cfg.options.get("after", 3)))
'''


def _crashy_plugin(tmp: Path) -> dict[str, str]:
    """A backend plugin, installed the way third parties add one (an entry point), on PYTHONPATH."""
    site = tmp / "plugin"
    (site / "crashy_backend-0.1.dist-info").mkdir(parents=True)
    (site / "crashy_backend.py").write_text(_CRASHY, encoding="utf-8")
    (site / "crashy_backend-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: crashy-backend\nVersion: 0.1\n", encoding="utf-8")
    (site / "crashy_backend-0.1.dist-info" / "entry_points.txt").write_text(
        "[promptweave.backends]\ncrashy = crashy_backend:create\n", encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_native_crash_mid_run_is_one_line_and_resumes(tmp_path: Path) -> None:
    env = _crashy_plugin(tmp_path)
    cfg = scripted_pipeline(tmp_path, rows=8, extra="concurrency: 1\n")
    cfg.write_text(cfg.read_text().replace("backend: scripted", "backend: crashy")
                   .replace("options: {default:", "options: {after: 3, default:"), encoding="utf-8")
    args = ["run", str(cfg), "--run-id", "crash", "--no-progress", "--json"]

    crashed = cli(*args, cwd=tmp_path, env={**env, "CRASHY": "1"})
    assert crashed.returncode == 128 + signal.SIGSEGV, crashed.stderr
    assert "Traceback" not in crashed.stderr and "Fatal Python error" not in crashed.stderr
    (line,) = crashed.stderr.strip().splitlines()
    run_dir = tmp_path / "runs" / "scripted" / "crash"
    assert line.startswith("error: promptweave run died with SIGSEGV in native code called from "), line
    assert f"3 finished rows are saved in {run_dir}" in line
    assert line.endswith("resume with: " + PREFIX + shlex.join(args)), line
    assert "crashy_backend.py" in (run_dir / "crash.log").read_text()  # the full stack, for a bug report
    assert len(read_jsonl(run_dir / "results.jsonl")) == 3

    resumed = _run_printed(line, tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["ran"], summary["skipped"], summary["errors"]) == (5, 3, 0)
    rows = read_jsonl(run_dir / "results.jsonl")
    assert len(rows) == 8 and len({r["key"] for r in rows}) == 8


def test_killed_run_takes_its_worker_with_it(tmp_path: Path) -> None:
    """SIGKILL on ``promptweave run`` (the supervisor) stops the work too: nothing runs on unseen."""
    cfg = scripted_pipeline(tmp_path, rows=200, options=", delay: 0.05", extra="concurrency: 1\n")
    results = tmp_path / "runs" / "scripted"
    proc = subprocess.Popen([sys.executable, "-m", "promptweave", "run", str(cfg), "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(_lines(p) >= 2 for p in results.rglob("results.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    (path,) = results.rglob("results.jsonl")
    at_kill = _lines(path)
    time.sleep(1.0)  # 20 more rows' worth of time
    assert _lines(path) <= at_kill + 1


def test_retry_errors_hint_works_as_printed(tmp_path: Path) -> None:
    with serve(fail_match=r"Zeile 000[13]") as url:
        cfg = make_pipeline(tmp_path, url, 6, model=", max_retries: 0")
        args = ["run", str(cfg), "--set", "data.limit=5", "--run-id", "retry", "--no-progress"]
        first = cli(*args, cwd=tmp_path)
        assert first.returncode == 1, first.stderr
        hint = next(line for line in first.stdout.splitlines() if "re-run them with:" in line)
        assert hint.startswith("2 rows failed;")
        assert hint.endswith(PREFIX + shlex.join([*args, "--retry-errors"])), hint
        configure(url, fail_match=None)
        again = _run_printed(hint, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "5 rows (2 run, 3 resumed, 0 errors)" in again.stdout
    rows = read_jsonl(tmp_path / "runs" / "faults" / "retry" / "results.jsonl")
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)

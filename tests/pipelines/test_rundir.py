"""Run-directory primitives: identifiers, one-line file-system errors, the lock."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from promptweave.pipelines.lock import RunLock
from promptweave.pipelines.rundir import RunDirError, check_component, fs_error


@pytest.mark.parametrize("value", ["..", ".", "a/b", "/abs", "a\\b", "a\0b", "x" * 129, "", "  ", "a\nb", "\x7f",
                                   "é" * 128])
def test_identifiers_that_are_not_one_directory_name(value: str) -> None:
    assert check_component(value, "run_id") is not None


@pytest.mark.parametrize("value", ["r1", "my-run_2.v3", "2026-01-01", "...", ".hidden", "ünïcode", "x" * 128])
def test_identifiers_that_are(value: str) -> None:
    assert check_component(value, "run_id") is None


def test_a_full_disk_is_one_line_that_says_how_to_resume() -> None:
    msg = str(fs_error(Path("runs/x/results.jsonl"), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert msg == ("cannot write runs/x/results.jsonl: no space left on the device; free some space; finished "
                   "rows are kept, run the same command again to resume")
    assert "\n" not in msg


def test_the_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run")
    first.acquire()
    with pytest.raises(RunDirError, match=rf"in use by PID {os.getpid()} on host "):
        RunLock(tmp_path / "run").acquire()  # another open file description: flock conflicts
    first.release()
    assert (tmp_path / "run" / ".lock").read_bytes() == b""  # no stale note
    with RunLock(tmp_path / "run"):
        pass


def test_a_run_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("x")
    with pytest.raises(RunDirError, match="not a directory|is a file"):
        RunLock(tmp_path / "run").acquire()


def test_a_forked_child_neither_holds_nor_frees_the_lock(tmp_path: Path) -> None:
    """A process forked while the lock is held (report.html's writer, the statistics workers):
    its exit never frees the parent's lock, and once the parent is gone (SIGKILL) a re-run may
    take the directory while the child still lives."""
    import subprocess
    import sys
    import textwrap

    from tests.helpers import REPO

    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from promptweave.pipelines.lock import RunLock
        lock = RunLock(Path({str(tmp_path / 'run')!r}))
        lock.acquire()
        child = os.fork()
        if child == 0:  # the child ends at once, as python ends (finalizers would run)...
            if sys.argv[1] == "child-exits":
                sys.exit(0)
            time.sleep(30)  # ...or outlives its parent
            os._exit(0)
        if sys.argv[1] == "child-exits":
            os.waitpid(child, 0)
            other = RunLock(Path({str(tmp_path / 'run')!r}))
            try:
                other.acquire()
                print("FREED")  # the child's exit unlocked the parent's lock
            except Exception:
                print("HELD")
            sys.exit(0)
        print(child, flush=True)
        os.kill(os.getpid(), 9)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", script, "child-exits"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.stdout.strip() == "HELD", res.stderr
    res = subprocess.run([sys.executable, "-c", script, "parent-killed"], capture_output=True, text=True, env=env,
                         timeout=60)
    child = int(res.stdout.split()[0])
    try:
        os.kill(child, 0)  # still alive
        again = RunLock(tmp_path / "run")
        again.acquire()  # the directory is free although the child lives
        again.release()
    finally:
        os.kill(child, 9)

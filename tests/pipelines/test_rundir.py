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

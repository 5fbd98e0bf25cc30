"""One process per run directory: an exclusive ``flock`` on ``<run_dir>/.lock``.

The holder writes its PID, host and start time into the file while it holds the lock and
empties it on release. The kernel drops the lock when its holder exits, however it exits (SIGKILL, power loss of the
process), so a stale lock file never blocks a later run. A second process on the same run
directory fails at once and names the holder (PID, host, start time) instead of paying for every
row a second time and racing the first one at compaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path

from .rundir import RunDirError, fs_error, open_regular

LOCK_NAME = ".lock"


class RunLock:
    """``acquire()`` creates the run directory and takes the lock; ``release()`` lets it go."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunDirError(f"cannot use {self.dir} as a run directory: it is a file; move it away "
                              "or choose another --run-id") from None
        except OSError as exc:
            raise fs_error(self.dir, exc, "create") from None
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, "create the lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise RunDirError(f"run directory {self.dir} is in use by {holder}; wait for that run to finish, "
                              "or give this one another --run-id") from None
        except OSError as exc:
            os.close(fd)
            raise fs_error(self.path, exc, "lock") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        with contextlib.suppress(OSError):  # the note is for humans; the flock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        self._fd = fd
        self._finalizer = weakref.finalize(self, _close, fd)
        _HELD.add(self)

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # unlock and close, once
        self._fd = self._finalizer = None
        _HELD.discard(self)

    def _forget(self) -> None:
        """In a forked child: close this copy of the descriptor, never unlock (the lock belongs to
        the open file the parent shares: unlocking or emptying it here would free the parent's)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._finalizer = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


def _forget_in_child() -> None:
    """A process forked while a run holds its lock (report.html's process, the statistics
    workers) does not hold the lock. Else a parent killed with SIGKILL left its run directory
    locked until every child had ended (a re-run was refused meanwhile), and a child ending
    through Python's exit ran the lock's finalizer, which unlocked the parent's lock."""
    for lock in list(_HELD):
        lock._forget()
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):  # no stale holder note once the holder is gone
        os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def _describe(fd: int, wait: float = 0.5) -> str:
    """The holder as it wrote itself into the lock file. It writes right after taking the lock,
    so a process that lost a race by microseconds waits a moment for the note."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"PID {int(info['pid'])} on host {info['host']} (since {info['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another process"
            time.sleep(0.01)

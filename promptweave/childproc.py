"""Helper processes that end with the process that started them.

The statistics workers (a ``ProcessPoolExecutor``) wait on a pipe that every worker holds a copy
of: when the run is killed (``kill -9``, the OOM killer), no worker ever sees it close, and the
workers stayed behind for good, each holding the run's memory and its terminal's output pipe.
On Linux :func:`die_with_parent` asks the kernel to end this process when its parent ends
(``PR_SET_PDEATHSIG``); elsewhere it does nothing (the page's process also leaves when its socket
closes: :mod:`promptweave.pipelines.livepage`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """End this process (SIGKILL) when the process ``parent`` that forked it ends."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the request was made
        os._exit(1)


def worker_init(parent: int) -> None:
    """A statistics worker's start (``ProcessPoolExecutor(initializer=...)``)."""
    from .memtune import keep_freed_memory

    die_with_parent(parent)
    keep_freed_memory()  # each job frees what the one before it allocated: kept, it is not faulted in again


def kill_and_reap(pid: int) -> None:
    """End child ``pid`` (SIGKILL: it may be stopped) and wait for it; gone already is no error."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)

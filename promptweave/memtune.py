"""Keep freed heap memory in the process instead of handing it back to the system at once.

glibc gives freed memory back to the kernel eagerly: a block of 128 KB or more is its own
``mmap`` (unmapped when freed), and the heap's free top is trimmed past 128 KB. A process that
allocates and frees the same few megabytes over and over (a statistics worker scoring chunk after
chunk, the page's process building its strings) then takes a page fault for every 4 KB of them,
every time. Page faults are cheap on bare metal, but cost ~10 µs each in sandboxed and
virtualised kernels (measured on this project's 2-core CI machine: a 2,000-segment chrF chunk
spent a third of its time in 7,000 faults).

:func:`keep_freed_memory` raises both thresholds (blocks up to 8 MB come from the heap; the
heap's top is trimmed past 64 MB), which takes the faults away and costs at most that much idle
memory. It does nothing off glibc, and ``PROMPTWEAVE_KEEP_FREED=0`` switches it off.
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 8 << 20
TRIM_BYTES = 64 << 20


def keep_freed_memory() -> bool:
    """Set this process's glibc thresholds (see the module); True if they were set."""
    if not sys.platform.startswith("linux") or os.environ.get("PROMPTWEAVE_KEEP_FREED", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))

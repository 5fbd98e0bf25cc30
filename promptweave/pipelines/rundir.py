"""Safe file-system primitives for a run directory: identifiers that cannot leave ``output:``,
atomic writes through unique temp files that never follow a planted symlink, and one-line
errors for the file-system failures a user can fix (disk full, read-only, permissions).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import PromptweaveError
from ..secrets import scrub

MAX_ID_CHARS = 128  # a run id or pipeline name is one directory name, well under NAME_MAX (255 bytes)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# a FIFO planted where a run reads or appends must not block it forever
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a run's files get the mode any other file would (0644 usually)
FILE_MODE = 0o666 & ~_umask()


def temp_beside(path: Path) -> tuple[int, str]:
    """A new, exclusively created temp file in ``path``'s directory (a symlink planted at any
    name is never followed), with the usual file mode."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise fs_error(path, exc) from None
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return fd, tmp


class RunDirError(PromptweaveError):
    """The run directory cannot be used: a bad identifier, a file-system failure, a lock held by
    another process, or a run of a different config under the same id."""


def check_component(value: str, what: str) -> str | None:
    """Why ``value`` cannot be one directory name under ``output:`` (None when it can)."""
    if not isinstance(value, str) or not value.strip():
        return f"{what} is empty"
    if value in {".", ".."}:
        return f"{what} '{value}' would leave the output directory"
    bad = next((c for c in value if c in "/\\" or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        shown = {"/": "'/'", "\\": "'\\'", "\0": "a NUL byte"}.get(bad, f"control character {ord(bad):#04x}")
        return f"{what} contains {shown}; use letters, digits, '.', '_' and '-'"
    if len(value) > MAX_ID_CHARS or len(value.encode("utf-8", "surrogatepass")) > 255:
        return f"{what} is {len(value)} characters long; keep it under {MAX_ID_CHARS}"
    return None


_REASONS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space"),
    errno.EFBIG: ("the file grew past the allowed file size", "raise the file-size limit (ulimit -f)"),
    errno.EROFS: ("the file system is read-only", "set output: to a writable directory"),
    errno.EACCES: ("permission denied", "make it writable or set output: to a writable directory"),
    errno.EPERM: ("operation not permitted", "make it writable or set output: to a writable directory"),
    errno.ELOOP: ("it is a symbolic link, which a run never follows", "replace the link with a regular file"),
    errno.EISDIR: ("it is a directory", "move the directory away"),
    errno.EEXIST: ("it exists and is not a directory", "move it away or choose another --run-id"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "set output: to a directory"),
}


def fs_error(path: Path | str, exc: OSError, action: str = "write") -> RunDirError:
    """One line for a failed file-system call, with what to do and how to resume."""
    reason, fix = _REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "check the path"))
    resume = "; finished rows are kept, run the same command again to resume" if action == "write" else ""
    return RunDirError(f"cannot {action} {path}: {reason}; {fix}{resume}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def _committing(path: Path) -> Iterator[tuple[int, str]]:
    """A fresh temp file beside ``path`` (its fd and name), renamed over ``path`` when the block
    succeeds and removed when it fails; a file-system error becomes one :func:`fs_error`."""
    fd, tmp = temp_beside(path)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise fs_error(path, exc) from None
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[str]:
    """Yield the name of a fresh temp file beside ``path`` (created exclusively, so a symlink
    planted at any name is never followed) and move it over ``path`` when the block succeeds.
    ``os.replace`` swaps the directory entry: a symlink at ``path`` itself is replaced, not followed."""
    with _committing(Path(path)) as (fd, tmp):
        os.close(fd)
        yield tmp


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``path`` all at once: readers see the old file or the new one, never a part."""
    with _committing(Path(path)) as (fd, _tmp):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: Path | str, data: Any) -> None:
    # a lone surrogate (a JSON "\\ud800" escape in the data) is written as that escape again
    write_bytes_atomic(path, (scrub(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n")
                       .encode("utf-8", "backslashreplace"))


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, scrub(text).encode("utf-8", "backslashreplace"))  # lone surrogates: escaped


def open_regular(path: Path | str, flags: int, action: str = "write") -> int:
    """``os.open`` that follows no symlink, never blocks on a FIFO and accepts only a regular file."""
    try:
        fd = os.open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise RunDirError(f"cannot {action} {path}: it is not a regular file; move it away") from None
        raise fs_error(path, exc, action) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunDirError(f"cannot {action} {path}: it is not a regular file; move it away")
    os.set_blocking(fd, True)
    return fd


def open_append(path: Path) -> int:
    """A raw append-only descriptor; refuses a symlink at ``path`` rather than write through it."""
    return open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def read_small(path: Path, limit: int = 4 << 20) -> bytes | None:
    """A small regular file's bytes, or None when absent, not a regular file, a link or too big."""
    try:
        fd = open_regular(path, os.O_RDONLY, "read")
    except RunDirError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def write_all(fd: int, data: bytes, path: Path) -> None:
    """``os.write`` until every byte is out (a short write is legal, e.g. near a full disk)."""
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        raise fs_error(path, exc) from None


def _unlink(p: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)

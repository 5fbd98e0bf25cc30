"""Opening input files safely: only regular files, never blocking, bounded lines.

A FIFO, a character device or a directory given as a data, config or template path must end
with a one-line error, not block forever on ``open`` or read ``/dev/zero`` until memory runs
out. :func:`open_regular` opens with ``O_NONBLOCK`` (a FIFO without a writer would otherwise
block in ``open`` itself) and checks ``fstat`` of what was opened, so a path swapped between a
check and the open cannot slip through either.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import DataError

MAX_LINE = 16 * 1024 * 1024  # a longer line is a broken file, not data
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # pipeline files and templates


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(p: Path, what: str, error: type[Exception] = DataError) -> BinaryIO:
    """``p`` opened for binary reading; ``error`` (one line, naming ``what`` and ``p``) if it is
    missing, unreadable or not a regular file."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        hint = " (a symbolic link to a missing file)" if os.path.islink(p) else ""
        raise error(f"{what}: {p} does not exist{hint}; check the path") from None
    except ValueError:  # e.g. a NUL byte in the path
        raise error(f"{what}: {str(p)!r:.80} is not a valid path (it contains a NUL byte)") from None
    except IsADirectoryError:
        raise error(f"{what}: {p} is a directory, not a file; give a file") from None
    except OSError as exc:
        raise error(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{what}: {p} is {_kind(mode)}, not a regular file; give a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(p: Path, what: str, error: type[Exception] = DataError, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The whole of a small regular file (configs, templates); ``error`` past ``limit`` bytes."""
    with open_regular(p, what, error) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what}: {p} is larger than {limit // (1024 * 1024)} MiB; is this the right file?")
    return data


def open_text(p: Path, what: str) -> io.TextIOWrapper:
    """A regular file as UTF-8 text (a leading BOM is not data), newlines kept as written."""
    return io.TextIOWrapper(open_regular(p, what), encoding="utf-8-sig", newline="")


def iter_lines(p: Path, what: str = "data", keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text); errors name file:line on invalid UTF-8 or lines over :data:`MAX_LINE`."""
    with open_text(p, what) as f:
        lineno = 0
        while True:
            lineno += 1
            try:
                line = f.readline(MAX_LINE + 1)
            except UnicodeDecodeError:
                # the decoder reads ahead, so the error can surface a few lines early
                lineno = _first_bad_utf8_line(p, lineno)
                raise DataError(f"{p}:{lineno}: not valid UTF-8; convert the file to UTF-8") from None
            if not line:
                return
            if len(line) > MAX_LINE:
                raise DataError(f"{p}:{lineno}: line is longer than {MAX_LINE // (1024 * 1024)} MiB; "
                                "is this really a line-based data file?")
            yield lineno, (line if keep_ends else line.rstrip("\r\n"))


def _first_bad_utf8_line(p: Path, start: int) -> int:
    with open_regular(p, "data") as f:
        n = 0
        while raw := f.readline(MAX_LINE + 1):
            n += 1
            if n >= start:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return n
    return start

"""The reason a vLLM engine did not start, from the engine's own process.

vLLM (V1) starts its engine core in a child process. When that process fails during start-up,
the parent only raises ``RuntimeError: Engine core initialization failed. See root cause above``;
the root cause (say ``ValueError: Available memory on node 0 ... is less than desired``) is
logged by the child, on the terminal. To make it the rows' error, the engine starts with a
logging configuration (``VLLM_LOGGING_CONFIG_PATH``, read by the child when it imports vLLM) that
is vLLM's own default plus one handler: ERROR records, with their tracebacks, into a temporary
file. The terminal shows what it always showed. A user's own ``VLLM_LOGGING_CONFIG_PATH`` or
``VLLM_CONFIGURE_LOGGING=0`` is left alone (the message then points at the log instead).
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ENV = "VLLM_LOGGING_CONFIG_PATH"
#: the last line of a Python traceback: "ValueError: ..." or "torch.OutOfMemoryError: ..."
_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b:?.*$")


def _config(log_file: Path) -> dict[str, Any] | None:
    try:
        from vllm.logger import DEFAULT_LOGGING_CONFIG
    except Exception:  # noqa: BLE001 - another vLLM version: no capture, the generic hint stays
        return None
    config = copy.deepcopy(DEFAULT_LOGGING_CONFIG)
    try:
        config["handlers"]["promptweave_errors"] = {
            "class": "logging.FileHandler", "filename": str(log_file), "level": "ERROR",
            "encoding": "utf-8", "delay": True,
        }
        config["loggers"]["vllm"]["handlers"].append("promptweave_errors")
        json.dumps(config)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    return config


@contextmanager
def capture_engine_errors() -> Iterator[list[str]]:
    """Start an engine inside this block; afterwards the list holds the root cause line(s) the
    engine's processes logged (empty when they logged none or capture was not possible)."""
    found: list[str] = []
    if os.environ.get(_ENV) or os.environ.get("VLLM_CONFIGURE_LOGGING", "1") == "0":
        yield found
        return
    folder = Path(tempfile.mkdtemp(prefix="promptweave-vllm-"))
    log_file, config_file = folder / "errors.log", folder / "logging.json"
    config = _config(log_file)
    if config is None:
        folder.rmdir()
        yield found
        return
    config_file.write_text(json.dumps(config), encoding="utf-8")
    os.environ[_ENV] = str(config_file)  # the engine's child processes inherit it when they start
    try:
        yield found
    finally:
        os.environ.pop(_ENV, None)
        found.extend(root_causes(log_file))
        for f in (log_file, config_file):
            f.unlink(missing_ok=True)  # a running child keeps writing to its open (unlinked) file
        try:
            folder.rmdir()
        except OSError:
            pass


def root_causes(log_file: Path) -> list[str]:
    """The exception line of each traceback in ``log_file`` (its last, unindented line), in order:
    in a chain of exceptions the first is the deepest cause."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[str] = []
    in_traceback = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace() and _EXC_LINE.match(line):
            out.append(" ".join(line.split()))
            in_traceback = False
    return out

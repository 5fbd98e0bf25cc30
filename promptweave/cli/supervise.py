"""``promptweave run`` under a supervisor: a native crash ends in one line and a resumable run.

A segmentation fault in a backend's native code (llama.cpp, vLLM, torch, ...) cannot be caught
inside the process it kills. So ``promptweave run`` re-runs itself as a child process
(``python -m promptweave run ...``, the same arguments) and waits. The child does the work, prints
its own output and errors, and tells the supervisor its run directory through a small status file.
When the child dies by a signal, the supervisor prints one line: what died (from the child's
``faulthandler`` dump, kept as ``crash.log`` in the run directory), how many finished rows are
saved, and the exact command that resumes.

The child sits in a process group of its own, so that a Ctrl-C reaches it once, forwarded by the
supervisor, and not twice; on Linux it also dies with the supervisor (``PR_SET_PDEATHSIG``), so a
killed ``promptweave run`` never leaves a run going on in the background.
Set ``PROMPTWEAVE_SUPERVISE=0`` to run in-process.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

SUPERVISED_ENV = "PROMPTWEAVE_SUPERVISED"  # the child's status folder; set only in the child
_PARENT_ENV = "PROMPTWEAVE_SUPERVISOR_PID"
_PROG_ENV = "PROMPTWEAVE_PROG"
_LOG_ENV = "PROMPTWEAVE_LOG_LEVEL"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()
_crash_log: TextIO | None = None  # kept open for faulthandler for the child's lifetime


def invocation() -> str:
    """How the user started promptweave, as a command prefix that works when pasted."""
    if os.environ.get(_PROG_ENV):
        return os.environ[_PROG_ENV]
    argv0 = sys.argv[0] if sys.argv else "promptweave"
    if Path(argv0).name == "__main__.py":  # python -m promptweave
        return "python -m promptweave"
    name = Path(argv0).name
    if shutil.which(name) and Path(shutil.which(name) or "").resolve() == Path(argv0).resolve():
        return name
    return shlex.quote(argv0) if argv0 else "promptweave"


def command_line(args: list[str], add: list[str] | None = None) -> str:
    """The shell-quoted command for ``args`` (as given after the program name) plus ``add``."""
    extra = [a for a in (add or []) if a not in args]
    return " ".join([invocation(), *map(shlex.quote, [*args, *extra])])


def should_supervise() -> bool:
    return (os.name == "posix" and SUPERVISED_ENV not in os.environ
            and os.environ.get("PROMPTWEAVE_SUPERVISE", "1").strip().lower() not in ("0", "false", "no", "off"))


def count_finished(run_dir: Path) -> int:
    """Rows with a complete record in ``results.jsonl`` (a torn last line does not count)."""
    keys: set[str] = set()
    try:
        with open(run_dir / "results.jsonl", "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    keys.add(str(json.loads(raw)["key"]))
                except (ValueError, KeyError, TypeError):
                    break
    except OSError:
        return 0
    return len(keys)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _where(crash_text: str) -> str | None:
    """``pkg/file.py:LINE in func`` of the innermost Python frame of the crashing thread."""
    frame = r' 0x[0-9a-f]+[^\n]*\n\s+File "([^"]+)", line (\d+) in (\S+)'
    m = re.search("Current thread" + frame, crash_text) or re.search("Thread" + frame, crash_text)
    if not m:
        return None
    path = Path(m.group(1))
    return f"{'/'.join(path.parts[-2:])}:{m.group(2)} in {m.group(3)}"


def supervise(args: list[str]) -> int:
    """Run ``promptweave ARGS`` in a child and return its exit code (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="promptweave-run-") as tmp:
        env = {**os.environ, SUPERVISED_ENV: tmp, _PARENT_ENV: str(os.getpid()), _PROG_ENV: invocation(),
               _LOG_ENV: str(logging.getLogger().getEffectiveLevel())}
        # a process group of its own: a terminal's Ctrl-C reaches the supervisor only, which forwards it once
        group: dict[str, Any] = ({"process_group": 0} if sys.version_info >= (3, 11)
                                 else {"preexec_fn": os.setpgrp})
        child: list[subprocess.Popen[bytes]] = []
        pending: list[int] = []

        def forward(sig: int, _frame: Any) -> None:
            if not child:
                pending.append(sig)  # arrived before the child started: sent once it has
            elif child[0].poll() is None:
                child[0].send_signal(sig)

        previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
        try:
            child.append(subprocess.Popen([sys.executable, "-m", "promptweave", *args], env=env, **group))
            for sig in pending:
                child[0].send_signal(sig)
            code = child[0].wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code >= 0:
            return code
        _report_death(-code, Path(tmp), args)
        return 128 - code


def _report_death(sig: int, tmp: Path, args: list[str]) -> None:
    try:
        status = json.loads((tmp / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    crash_text = ""
    try:
        crash_text = (tmp / "crash.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    where = _where(crash_text)
    what = f"promptweave run died with {_signal_name(sig)}"
    if where:
        what += f" in native code called from {where}"
    elif sig == signal.SIGKILL:
        what += " (killed from outside, e.g. by the out-of-memory killer)"
    run_dir = Path(status["run_dir"]) if status.get("run_dir") else None
    if run_dir is None:
        saved = "before any row ran"
    else:
        saved = f"{count_finished(run_dir)} finished rows are saved in {run_dir}"
        if crash_text and run_dir.is_dir():
            try:
                shutil.copyfile(tmp / "crash.log", run_dir / "crash.log")
                saved += f" (stack: {run_dir / 'crash.log'})"
            except OSError:
                pass
    print(f"error: {what}; {saved}; resume with: {command_line(args)}", file=sys.stderr, flush=True)


def child_setup() -> None:
    """In the supervised child: die with the supervisor, dump a native crash's stack to a file."""
    global _crash_log
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if str(os.getppid()) != os.environ.get(_PARENT_ENV):  # the supervisor is already gone
            os._exit(128 + signal.SIGKILL)
    try:
        _crash_log = open(Path(os.environ[SUPERVISED_ENV]) / "crash.log", "w", encoding="utf-8")  # noqa: SIM115
        faulthandler.enable(file=_crash_log, all_threads=True)
    except OSError:
        pass
    level = os.environ.get(_LOG_ENV, "")
    if level.isdigit():
        logging.getLogger().setLevel(int(level))


def report_run_dir(run_dir: Path) -> None:
    """In the supervised child: tell the supervisor where finished rows go."""
    folder = os.environ.get(SUPERVISED_ENV)
    if not folder:
        return
    tmp = Path(folder) / "status.json.tmp"
    tmp.write_text(json.dumps({"run_dir": str(run_dir)}), encoding="utf-8")
    os.replace(tmp, Path(folder) / "status.json")

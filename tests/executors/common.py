"""Aids shared by the executor tests: the same pipeline run locally and on Ray, compared."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.helpers import read_jsonl

_TIMING = re.compile(r"\d+(\.\d+)?\s*(ms|s)\b")
_LATENCY_ROW = re.compile(r"^(\| \w+ \| \d+ )(\| [\d.]+ ){4}\|$", re.M)  # | model | calls | p50 .. max |


def run_dir(output: Path) -> Path:
    (d,) = (output / "faults").iterdir()
    return d


def rows(output: Path) -> list[dict[str, Any]]:
    """results.jsonl without timings (a call's latency differs from run to run)."""
    return [_untimed(r) for r in read_jsonl(run_dir(output) / "results.jsonl")]


def report(output: Path) -> str:
    """report.md with its timings (run time, latency percentiles) blanked."""
    text = (run_dir(output) / "report.md").read_text(encoding="utf-8")
    return _TIMING.sub("<t>", _LATENCY_ROW.sub(lambda m: m.group(1) + "| <latency> |", text))


def _untimed(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k != "latency_s"}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def worker_pids() -> set[int]:
    """PIDs of the processes Ray runs our actors in (Ray titles them ``ray::RowWorker``)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::RowWorker"):
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids

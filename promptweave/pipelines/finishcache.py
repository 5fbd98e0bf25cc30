"""What the last finish computed, so that resuming a finished run does not score it again.

``.finish.json`` (written last, after every result file) holds the scores without the per-row
segments, the report examples, the segment scores and sacreBLEU statistics of the rows that
report.html covers and that page's significance tests (keyed by seed and sample count), under a fingerprint of ``results.jsonl`` (size, modification time, inode)
and of the configuration. A later finish whose fingerprint matches (the rows did not change and
the run made no model call) rewrites only what depends on the run itself (manifest, report.md,
report.html); anything else, including a missing or unreadable state file, scores everything
again, so this can only save work, never change a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .rundir import write_text_atomic

STATE_FILE = ".finish.json"


def fingerprint(results: Path, config: dict[str, Any], versions: dict[str, str], report_rows: int) -> dict[str, Any] | None:
    """The state the next finish compares with; ``None`` when ``results.jsonl`` cannot be read."""
    try:
        st = os.stat(results)
    except OSError:
        return None
    blob = json.dumps({"config": config, "versions": versions, "report_rows": report_rows},
                      sort_keys=True, default=str)
    return {"results": [st.st_size, st.st_mtime_ns, st.st_ino], "config": hashlib.sha256(blob.encode()).hexdigest()}


def forget(run_dir: Path) -> None:
    """Drop the state before results change (a finish that dies half-way leaves none)."""
    with contextlib.suppress(OSError):
        os.unlink(run_dir / STATE_FILE)


def load(run_dir: Path, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The saved payload when ``state`` matches it and the files it describes are all there."""
    if state is None:
        return None
    try:
        saved = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("state") != state:
        return None
    scores = saved.get("scores") or {}
    files = [run_dir / "scores.json", run_dir / "manifest.json"] + [Path(f) for f in scores.get("mtme_files") or []]
    if not all(f.is_file() for f in files):
        return None
    return saved


def save(run_dir: Path, state: dict[str, Any] | None, scores: dict[str, Any], examples: dict[str, Any],
         segments: dict[str, Any], stats: dict[str, Any], tests: dict[str, Any]) -> None:
    if state is None:
        return
    payload = {"state": state, "scores": scores, "examples": examples, "segments": segments, "stats": stats,
               "tests": tests}
    # compact, unlike the files people read: json's C encoder only runs without indent, and the
    # statistics of 20,000 rows took the pure-Python one most of a second
    text = json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":"))
    write_text_atomic(run_dir / STATE_FILE, text + "\n")  # scrubbed, as every run-directory file

"""Small shared test aids (kept out of conftest so each test file says what it uses)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "quickstart.de-en.jsonl"


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` for a command a test will Ctrl-C: SIGINT at its default, as for a command
    typed at a terminal. A suite run in the background of a script (``pytest &``, as CI tools and
    fresh-install checks do) has SIGINT ignored, children inherit that, and Python then keeps it
    ignored: the signal would be lost and the run would finish with exit 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m promptweave ARGS`` as a user would."""
    return subprocess.run([sys.executable, "-m", "promptweave", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def scripted_pipeline(tmp: Path, *, rows: int = 5, reply: str = "EN: {echo}", extra: str = "",
                      options: str = "") -> Path:
    data = write_jsonl(tmp / "data.jsonl", [
        {"source": f"Satz Nummer {i}.", "reference": f"Sentence number {i}."} for i in range(rows)])
    cfg = tmp / "pipe.yaml"
    cfg.write_text(
        "name: scripted\n"
        f"model: {{backend: scripted, options: {{default: {json.dumps(reply)}{options}}}, max_retries: 2,"
        " backoff_base: 0.01}\n"
        f"data: {{path: {data}, src_lang: de, tgt_lang: en}}\n"
        "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"
        f"output: {tmp / 'runs'}\n" + extra,
        encoding="utf-8",
    )
    return cfg

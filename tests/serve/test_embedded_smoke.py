"""Smoke run on the embedded model: a fact the user gives in session 1 is in the memory text.
In a subprocess (``promptweave chat``), so that a crash of the native library fails this test
instead of the whole test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .server import REPO

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_embedded_model_keeps_the_fact(tmp_path: Path, embedded_model_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    cfg["model"].update(temperature=0, max_tokens=96)
    # one thread: on a shared, loaded 2-core machine llama.cpp's two threads wait on each other at
    # every step (an update took > 120 s per try and timed out; with one thread the test takes ~80 s)
    cfg["model"].setdefault("options", {})["n_threads"] = 1
    cfg["memory"]["max_sentences"] = 8
    cfg["store"] = f"sqlite:///{tmp_path / 'memory.db'}"
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "promptweave", "chat", str(path), "--session", "ada"],
                       input="Hello! My name is Ada and I live in Lyon.\n/end\n/memory\n", capture_output=True,
                       text=True, cwd=REPO, timeout=600, env={"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                                                              "PATH": "/usr/bin:/bin",
                                                              "COLUMNS": "200", "HOME": str(Path.home())})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "memory v1" in r.stdout, r.stdout
    memory = r.stdout.split("memory v1 (turns 1-2)", 1)[-1]
    assert "Ada" in memory, r.stdout

"""The arena every hostile case runs in (one per session: building it runs the good pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.harness import build_arena


@pytest.fixture(scope="session")
def hostile_arena(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The arena's root: ``cases/`` (the corpus, generated files, table cases) and the good run in
    ``cases/runs/hostile/r1``; commands run with the root as working directory."""
    root = tmp_path_factory.mktemp("hostile")
    build_arena(root)
    yield root
    huge = root / "cases" / "generated" / "huge_line.jsonl"
    if huge.exists():
        huge.unlink()

"""The README's first command, end to end on the embedded model: translate, score, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, cli, read_jsonl

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_quickstart_translates_scores_and_resumes(embedded_model_path: Path, tmp_path: Path) -> None:
    config = REPO / "configs" / "quickstart.yaml"
    first = cli("run", str(config), "--no-progress", "--json", "--set", f"output={tmp_path}", timeout=900)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and len(first.stderr.strip().splitlines()) <= 1  # at most the probe's notice
    summary = json.loads(first.stdout)
    assert summary["rows"] == 12 and summary["errors"] == 0 and summary["usage"]["calls"] == 12
    run_dir = Path(summary["run_dir"])
    rows = read_jsonl(run_dir / "results.jsonl")
    assert len(rows) == 12
    hyps = [r["outputs"]["hyp"]["value"] for r in rows]
    assert all(h and h.strip() for h in hyps)
    # a real translation of simple sentences, not an echo of the German source
    assert sum(r["outputs"]["hyp"]["flags"] == [] for r in rows) >= 10
    bleu = summary["metrics"]["bleu"]["corpus"]
    assert bleu > 25, f"BLEU {bleu:.1f}: {hyps}"
    assert (run_dir / "report.md").is_file() and (run_dir / "manifest.json").is_file()

    again = cli("run", str(config), "--no-progress", "--json", "--set", f"output={tmp_path}", timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["ran"] == 0 and resumed["usage"]["calls"] == 0
    assert resumed["metrics"]["bleu"]["corpus"] == pytest.approx(bleu)

"""``promptweave report RUN_DIR...``: (re)build ``report.html`` of finished runs."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("report")
def report(
    run_dirs: list[Path] = typer.Argument(..., help="run directories (each holds results.jsonl, scores.json, manifest.json)"),
    samples: int = typer.Option(1000, "--bootstrap", min=100, help="bootstrap resamples for the intervals and tests"),
) -> None:
    """Write report.html (one self-contained offline page) into each run directory."""
    from ..pipelines.scoring import REPORT_ROWS
    from ..report import write_report

    for d in run_dirs:
        # bounded as the finish bounds it: a huge run's page covers its first rows (and says so)
        typer.echo(f"wrote {write_report(d, samples, max_rows=REPORT_ROWS)}")

"""``promptweave compare RUN_A RUN_B ...``: paired significance tests between systems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import PromptweaveError
from . import app


@app.command("compare")
def compare_runs(
    run_dirs: list[Path] = typer.Argument(..., help="run directories; the first system is the baseline "
                                                    "(a run grouped by system contributes each system)"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="system to test the others against (default: the first)"),
    paired_ar: bool = typer.Option(False, "--paired-ar", help="approximate randomization instead of paired bootstrap"),
    n_samples: int = typer.Option(0, "--n", min=0, help="resamples (bootstrap, default 1000) or trials (AR, default 10000)"),
    html: str = typer.Option("compare.html", "--html", help="also write the table as HTML here ('' for none)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Compare systems with sacrebleu's paired tests (BLEU/chrF/TER through sacrebleu itself; the
    same resampling for COMET, judge and human scores). Seed: SACREBLEU_SEED (default 12345)."""
    from ..report import load_run
    from ..report.stats import TestType
    from ..report.compare import comparisons_to_dict, compare, print_table, systems_from_runs, write_html

    test: TestType = "ar" if paired_ar else "bs"
    systems, specs = systems_from_runs([load_run(d) for d in run_dirs])
    if baseline is not None:
        found = [s for s in systems if s.name == baseline]
        if not found:
            raise PromptweaveError(f"--baseline {baseline!r}: no such system; systems: {', '.join(s.name for s in systems)}")
        systems = found + [s for s in systems if s.name != baseline]
    if len(systems) < 2:
        raise PromptweaveError(f"{run_dirs[0]}: one system only; give two or more run directories, "
                               "or a run grouped by system (scoring.group_by)")
    comps = compare(systems, specs, test, n_samples)
    if not comps:
        raise PromptweaveError("no metric is shared by all systems on common segments; nothing to compare")
    if as_json:
        typer.echo(json.dumps(comparisons_to_dict(comps, test), indent=2, ensure_ascii=False))
    else:
        print_table(comps, test)
    if html:
        write_html(Path(html), comps, test, [str(d) for d in run_dirs])
        if not as_json:
            typer.echo(f"wrote {html}")

"""``promptweave run | validate | schema``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text
from rich.table import Table

from .. import terminal
from . import Interrupted, app
from .supervise import SUPERVISED_ENV, child_setup, command_line, count_finished, report_run_dir

_SET = typer.Option(None, "--set", "-s", help="override a config value: key.path=value (repeatable)")


@app.command()
def run(
    config: Path = typer.Argument(..., help="pipeline YAML file"),
    set_: Optional[list[str]] = _SET,
    run_id: Optional[str] = typer.Option(None, help="run directory name (default: a hash of the config)"),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="re-run only the rows that failed"),
    limit: Optional[int] = typer.Option(None, help="process at most N rows (same as --set data.limit=N)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    overwrite: bool = typer.Option(False, "--overwrite", help="let a --run-id whose directory holds another "
                                   "config take it over (the rows the change affects run again)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local or ray (same as --set executor.kind=...)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT "
                                          "(same as --set executor.address=...)"),
) -> None:
    """Run a pipeline; re-running the same file resumes where it stopped."""
    if SUPERVISED_ENV in os.environ:
        child_setup()
    from .. import run_pipeline

    # the command as given, for the hints below: following a hint must run the same pipeline
    args = _run_args(config, set_ or [], run_id, limit, retry_errors, progress, as_json, overwrite)
    args += ["--executor", executor] if executor else []
    args += ["--address", address] if address else []
    overrides = list(set_ or [])
    if limit is not None:
        overrides.append(f"data.limit={limit}")
    overrides += [f"executor.kind={executor}"] if executor else []
    overrides += [f"executor.address={address}"] if address else []
    started: list[Path] = []

    def on_start(run_dir: Path) -> None:
        started.append(run_dir)
        report_run_dir(run_dir)

    try:
        summary = run_pipeline(config, overrides, run_id=run_id, retry_errors=retry_errors, progress=progress,
                               argv=sys.argv[1:], on_start=on_start, overwrite=overwrite)
    except KeyboardInterrupt:
        saved = (f"{count_finished(started[0])} finished rows are saved in {started[0]}" if started
                 else "no row had started")
        raise Interrupted(f"interrupted; {saved}; resume with: {command_line(args)}") from None
    scores, run_dir, led = summary.scores, summary.run_dir, summary.ledger
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "rows": summary.total, "ran": summary.ran,
                               "skipped": summary.skipped, "errors": summary.errors,
                               "usage": led.to_dict(), "metrics": scores["metrics"], "judges": scores["judges"]},
                              indent=2, default=str))
    else:
        console = terminal.console()
        console.print(Text.assemble((summary.name, "bold"), f": {summary.total} rows ({summary.ran} run, "
                                    f"{summary.skipped} resumed, {summary.errors} errors) in {summary.seconds:.1f}s"))
        console.print(f"model calls {led.calls}, cache hits {led.cache_hits}, retries {led.retries}, "
                      f"tokens {led.prompt_tokens}+{led.completion_tokens}"
                      + (f", cost {led.cost:.4f}" if led.cost else ""))
        _print_scores(console, scores)
        from ..report.markdown import terminal_lines

        for line in terminal_lines(scores.get("numbers") or {}):
            console.print(line)
        console.print(f"results: {run_dir}/results.jsonl · report: {run_dir}/report.md, {run_dir}/report.html",
                      soft_wrap=True)  # paths stay whole
        if summary.errors:
            console.print(f"{summary.errors} rows failed; re-run them with: "
                          f"{command_line(args, add=['--retry-errors'])}", style="yellow", soft_wrap=True)
    if summary.errors:
        raise typer.Exit(1)


def _run_args(config: Path, sets: list[str], run_id: str | None, limit: int | None, retry_errors: bool,
              progress: bool, as_json: bool, overwrite: bool = False) -> list[str]:
    """``run`` and its options as parsed, in a canonical order."""
    args = ["run", str(config)]
    for item in sets:
        args += ["--set", item]
    if run_id is not None:
        args += ["--run-id", run_id]
    if limit is not None:
        args += ["--limit", str(limit)]
    if retry_errors:
        args.append("--retry-errors")
    if not progress:
        args.append("--no-progress")
    if as_json:
        args.append("--json")
    if overwrite:
        args.append("--overwrite")
    return args


def _print_scores(console: Console, scores: dict) -> None:
    from ..report.numbers import fmt_score

    if scores["metrics"]:
        table = Table("metric", "group", "score", "signature")
        for name, m in scores["metrics"].items():
            if "groups" in m:
                for g, s in m["groups"].items():
                    table.add_row(name, g, fmt_score(name, s.get("corpus")), m["signature"])
            else:
                table.add_row(name, "all", fmt_score(name, m.get("corpus")), m["signature"])
        console.print(table)
    if scores["judges"]:
        table = Table("judge", "mean", "scored", "parse failures", "errors")
        for step_id, j in scores["judges"].items():
            table.add_row(step_id, _f(j["mean"], 3), str(j["scored"]), str(j["parse_failures"]), str(j["errors"]))
        console.print(table)


def _f(x: object, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else ("—" if x is None else str(x))


@app.command()
def validate(
    config: Path = typer.Argument(..., help="pipeline YAML file"),
    set_: Optional[list[str]] = _SET,
    data: bool = typer.Option(True, "--data/--no-data", help="also load the data and render prompts for row 1"),
) -> None:
    """Check a pipeline file (schema, templates, data) without calling a model."""
    from ..config import load_config
    from ..pipelines.engine import Engine
    from ..pipelines.steps import Row

    loaded = load_config(config, list(set_ or []))
    engine = Engine(loaded, Path("."), progress=False)
    engine.build_steps()
    n_rows = None
    if data:
        n_rows, first = 0, None
        for key, fields in engine.iter_data():  # streamed: a data file of any size checks in bounded memory
            first = first or (key, fields)
            n_rows += 1
        assert first is not None  # the data layer refuses empty data
        engine.preflight(Row(index=0, key=first[0], fields=first[1]))  # after the data's own errors
    steps = ", ".join(f"{s.id} ({s.kind})" for s in loaded.steps)
    typer.echo(f"{config}: OK — steps: {steps}" + (f"; {n_rows} rows" if n_rows is not None else ""))


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "--out", "-o", help="write to a file")) -> None:
    """Print the JSON Schema of pipeline files (for editor completion and validation)."""
    from ..config import json_schema

    text = json.dumps(json_schema(), indent=2)
    if out:
        try:
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            from ..errors import PromptweaveError

            raise PromptweaveError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)

"""``promptweave meta-eval``: correlate metric scores with human (MQM) scores, mt-metrics-eval style."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from ..errors import DataError, PromptweaveError
from . import app

_REFS_HELP = ("which systems each statistic uses: 'wmt' (default, as the WMT22/23 results): acc_eq with "
              "human references as extra systems, Kendall/Pearson/system accuracy over MT systems only; "
              "'exclude' or 'include': every statistic without or with them")


def _score_file_name(path: str) -> str:
    """``zh-en.COMET-22-refA.seg.score`` -> ``COMET-22-refA``; otherwise the file stem."""
    name = Path(path).name
    m = re.match(r"^[a-z]{2,3}-[a-z]{2,3}\.(.+)\.(seg|sys)\.score$", name)
    return m.group(1) if m else Path(path).stem


def _is_sys_file(path: str) -> bool:
    return ".sys." in Path(path).name


def load_from_score_files(human_files: list[str], metric_files: list[str], human: str) -> Any:
    """Build a table from mt-metrics-eval files: ``--human-file`` (seg, optionally sys) and
    ``--metric-file [NAME=]PATH`` (seg and/or sys per metric)."""
    from ..evaluators.mtme import read_score_file, table_from_scores

    seg_human = [p for p in human_files if not _is_sys_file(p)]
    sys_human = [p for p in human_files if _is_sys_file(p)]
    if len(seg_human) != 1 or len(sys_human) > 1:
        raise PromptweaveError("--human-file: give one segment-level file (*.seg.score) and at most one "
                               "system-level file (*.sys.score)")
    seg_metrics: dict[str, Any] = {}
    sys_metrics: dict[str, Any] = {}
    for item in metric_files:
        name, eq, path = item.partition("=")
        if not eq or Path(item).exists():
            name, path = _score_file_name(item), item
        if not name:
            raise PromptweaveError(f"--metric-file '{item}': expected NAME=PATH or an mt-metrics-eval file name")
        (sys_metrics if _is_sys_file(path) else seg_metrics)[name] = read_score_file(path)
    missing = sorted(set(sys_metrics) - set(seg_metrics))
    if missing:
        raise PromptweaveError(f"--metric-file: system-level scores for {', '.join(missing)} need segment-level "
                               "scores too (a *.seg.score file under the same name)")
    return table_from_scores(read_score_file(seg_human[0]), seg_metrics, human_name=human,
                             sys_human=read_score_file(sys_human[0]) if sys_human else None,
                             sys_metrics=sys_metrics)


def load_from_run(run_dir: Path, human: str | None) -> tuple[Any, str]:
    """A promptweave run directory: its ``mtme/`` score files (written when the pipeline sets
    ``scoring.group_by`` and ``scoring.human``); the human column defaults to ``scoring.human``."""
    mtme = run_dir / "mtme"
    if not mtme.is_dir():
        raise DataError(f"--run {run_dir}: no mtme/ score files; run a pipeline with scoring: "
                        "{group_by: system, human: <human score field>} first")
    if human is None:
        try:
            manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
            human = manifest["config"]["scoring"]["human"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            human = None
        if not human:
            raise PromptweaveError(f"--run {run_dir}: the run names no scoring.human; pass --human NAME")
    seg_files = sorted(str(p) for p in mtme.glob("*.seg.score"))
    human_seg = [p for p in seg_files if _score_file_name(p) == human]
    if not human_seg:
        have = ", ".join(_score_file_name(p) for p in seg_files)
        raise DataError(f"--run {run_dir}: no human scores '{human}' in mtme/ (have: {have})")
    sys_files = sorted(str(p) for p in mtme.glob("*.sys.score"))
    human_sys = [p for p in sys_files if _score_file_name(p) == human]
    metric_files = [p for p in seg_files + sys_files if p not in human_seg + human_sys]
    return load_from_score_files(human_seg + human_sys, metric_files, human), human


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


class MetaEvalFile:
    """A meta-eval YAML file: the command's options as keys (``tsv``, ``run``, ``human``,
    ``metrics``, ``refs``, ``bootstrap``...); relative paths resolve against the file's directory."""

    PATHS = {"tsv", "jsonl", "run"}
    LISTS = {"human_file", "metric_file"}
    SCALARS = {"human", "metrics", "refs", "ref_systems", "std_ref", "bootstrap", "seed", "confidence",
               "recalibrate"}

    @classmethod
    def load(cls, path: Path) -> dict[str, Any]:
        from ..errors import ConfigError
        from ..registry import suggest
        from ..yamlio import LocatedYAML

        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file does not exist; check the path", file=str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file: {exc}", file=str(path)) from None
        loc = LocatedYAML(text, str(path))
        data = loc.data or {}
        if not isinstance(data, dict):
            raise ConfigError("a meta-eval file is a mapping of options (tsv, run, human, metrics...)",
                              file=str(path), line=1)
        known = cls.PATHS | cls.LISTS | cls.SCALARS
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"unknown key{suggest(str(key), sorted(known))}", file=str(path),
                                  line=loc.line_of((key,)), key=str(key))
            if key in cls.PATHS:
                value = _near(path, str(value))
            elif key in cls.LISTS:
                items = value if isinstance(value, list) else [value]
                value = [_near_item(path, str(v)) for v in items]
            elif key in {"metrics", "ref_systems", "std_ref"} and isinstance(value, list):
                value = ",".join(map(str, value))
            out[key] = value
        return out


def _near(config: Path, value: str) -> Path:
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    return config.resolve().parent / p


def _near_item(config: Path, item: str) -> str:
    name, eq, path = item.partition("=")
    if eq and not Path(item).exists():
        return f"{name}={_near(config, path)}"
    return str(_near(config, item))


@app.command("meta-eval")
def meta_eval(
    config: Optional[Path] = typer.Argument(None, help="a meta-eval YAML file holding these options (flags override it)"),
    tsv: Optional[Path] = typer.Option(None, "--tsv", help="TSV with a header: system, seg_id, the human column, metric columns"),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="JSONL rows {system, seg_id, <human>, <metric>...}"),
    run: Optional[Path] = typer.Option(None, "--run", help="a promptweave run directory (its mtme/ score files)"),
    human_file: Optional[list[str]] = typer.Option(None, "--human-file", help="mt-metrics-eval human scores: a *.seg.score file, optionally a *.sys.score file too"),
    metric_file: Optional[list[str]] = typer.Option(None, "--metric-file", help="[NAME=]PATH of an mt-metrics-eval *.seg.score or *.sys.score file (repeatable)"),
    human: Optional[str] = typer.Option(None, "--human", help="human score column (TSV/JSONL) or its name [default: mqm; for --run: the run's scoring.human]"),
    metric_names: Optional[str] = typer.Option(None, "--metrics", help="comma-separated metric columns to evaluate [default: all]"),
    refs: str = typer.Option("wmt", "--refs", help=_REFS_HELP),
    ref_systems: Optional[str] = typer.Option(None, "--ref-systems", help="comma-separated systems that are human translations [default: names like ref, refA, refB]"),
    std_ref: Optional[str] = typer.Option(None, "--std-ref", help="comma-separated references the metrics used, never scored as systems [default: read from metric names, e.g. refA for BLEU-refA]"),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="bootstrap resamples of segments for confidence intervals (0: none)"),
    seed: int = typer.Option(0, "--seed", help="random seed of the bootstrap"),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999, help="confidence level of the intervals"),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="re-optimise the acc_eq epsilon in every bootstrap resample (slower)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Meta-evaluate metrics against human scores: system pairwise accuracy, Kendall tau-b, acc_eq, Pearson."""
    from ..evaluators.meta import meta_evaluate
    from ..evaluators.mtme import read_score_jsonl, read_score_tsv

    if config is not None:
        given = MetaEvalFile.load(config)
        tsv = tsv or given.get("tsv")
        jsonl = jsonl or given.get("jsonl")
        run = run or given.get("run")
        human_file = human_file or given.get("human_file")
        metric_file = metric_file or given.get("metric_file")
        human = human or given.get("human")
        metric_names = metric_names or given.get("metrics")
        refs = refs if refs != "wmt" else str(given.get("refs", "wmt"))
        ref_systems = ref_systems or given.get("ref_systems")
        std_ref = std_ref or given.get("std_ref")
        bootstrap = bootstrap or int(given.get("bootstrap", 0))
        seed = seed or int(given.get("seed", 0))
        confidence = float(given.get("confidence", confidence)) if confidence == 0.95 else confidence
        recalibrate = recalibrate or bool(given.get("recalibrate", False))
    sources = [x for x in (tsv, jsonl, human_file, run) if x]
    if len(sources) != 1:
        raise PromptweaveError("give exactly one input: --tsv FILE, --jsonl FILE, --run DIR, "
                               "or --human-file with --metric-file")
    if run is not None:
        table, human = load_from_run(run, human)
    human = human or "mqm"
    if refs not in ("wmt", "exclude", "include"):
        raise PromptweaveError(f"--refs '{refs}': choose wmt, exclude or include")
    wanted = _csv(metric_names)
    if run is not None:
        if wanted:
            unknown = [m for m in wanted if m not in table.metrics]
            if unknown:
                raise PromptweaveError(f"--metrics: no scores for {', '.join(unknown)}; have: {', '.join(table.metrics)}")
            table.metrics = {m: table.metrics[m] for m in wanted}
    elif tsv:
        table = read_score_tsv(tsv, human, wanted)
    elif jsonl:
        table = read_score_jsonl(jsonl, human, wanted)
    else:
        if not metric_file:
            raise PromptweaveError("--human-file needs at least one --metric-file NAME=PATH")
        table = load_from_score_files(list(human_file or []), list(metric_file), human)
        if wanted:
            unknown = [m for m in wanted if m not in table.metrics]
            if unknown:
                raise PromptweaveError(f"--metrics: no scores for {', '.join(unknown)}; have: {', '.join(table.metrics)}")
            table.metrics = {m: table.metrics[m] for m in wanted}
    if not table.metrics:
        raise DataError("no metric scores found; name the metric columns with --metrics")
    if table.n_items == 0 or bool(np.isnan(table.human).all()):
        raise DataError(f"no human scores ('{human}'); check --human")
    results = [meta_evaluate(table, m, refs=refs, ref_systems=_csv(ref_systems),  # type: ignore[arg-type]
                             std_refs=_csv(std_ref) if std_ref is not None else None, bootstrap=bootstrap,
                             seed=seed, confidence=confidence, recalibrate=recalibrate)
               for m in table.metrics]
    if as_json:
        payload = {"human": table.human_name, "items": table.n_items, "refs": refs,
                   "results": [r.to_dict() for r in results]}
        typer.echo(json.dumps(_nan_to_null(payload), indent=2))
        return
    _print_table(table, results, refs, _csv(ref_systems))


def _nan_to_null(value: Any) -> Any:
    """NaN (an undefined correlation) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(v) for v in value]
    return value


def _cell(result: Any, key: str, percent: bool) -> str:
    value = result.values[key]
    fmt = (lambda v: f"{100 * v:.1f}") if percent else (lambda v: f"{v:.3f}")
    text = "-" if math.isnan(value) else fmt(value)
    if key in result.ci and not any(math.isnan(v) for v in result.ci[key]):
        lo, hi = result.ci[key]
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    return text


def _print_table(table: Any, results: list[Any], refs: str, ref_systems: list[str] | None) -> None:
    from rich.table import Table

    from ..evaluators.meta import default_ref_systems

    out = Table(title=f"meta-evaluation against {table.human_name} ({table.n_items} segments)")
    for header in ("metric", "sys acc", "sys r", "tau-b", "tau-b item", "seg r", "acc_eq", "epsilon"):
        out.add_column(header, justify="left" if header == "metric" else "right", no_wrap=header == "metric")
    for r in results:
        out.add_row(r.metric, _cell(r, "sys_acc", True), _cell(r, "sys_pearson", False),
                    _cell(r, "seg_kendall", False), _cell(r, "seg_kendall_item", False),
                    _cell(r, "seg_pearson", False), _cell(r, "acc_eq", True), f"{r.epsilon:.4g}")
    console = _console()
    console.print(out)
    humans = default_ref_systems(table.systems) if ref_systems is None else set(ref_systems)

    def describe(systems: list[str]) -> str:
        extra = [s for s in systems if s in humans]
        return f"{len(systems)} systems" + (f" incl. {', '.join(extra)}" if extra else "")

    sets = {(tuple(r.systems["seg_kendall"]), tuple(r.systems["acc_eq"])) for r in results}
    for plain, acc in sorted(sets):
        console.print(f"systems (--refs {refs}): sys acc, Pearson, tau-b over {describe(list(plain))}; "
                      f"acc_eq over {describe(list(acc))}", markup=False, highlight=False, soft_wrap=True)
    notes = ["sys acc and acc_eq in %; sys r, seg r: Pearson; system scores: mean of segment scores "
             "unless given as *.sys.score",
             "tau-b: Kendall tau-b flattened over system x segment cells; tau-b item: per segment, averaged",
             "acc_eq: pairwise accuracy with ties, one global epsilon (tie calibration, Deutsch et al. "
             "2023), averaged over segments"]
    if results and results[0].bootstrap:
        r0 = results[0]
        notes.append(f"[lo, hi]: {100 * r0.confidence:g}% bootstrap intervals over {r0.bootstrap} resamples of "
                     "segments" + ("" if "sys_acc" in r0.ci else "; none at system level (system scores given)"))
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)


def _console() -> Any:
    """A rich console that does not squeeze tables to 80 columns when output is piped."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)

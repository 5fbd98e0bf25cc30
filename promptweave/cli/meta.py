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
from ..evaluators.significance import CLUSTER_STATISTICS, cluster_metrics
from . import app
from .meta_report import nan_to_null, print_clusters, print_pooled, print_table, pool

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


MAX_BOOTSTRAP = 100_000
MAX_PERMUTATIONS = 100_000


def _int_in(low: int, high: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number in {low}..{high}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value
    return check


def _float_in(low: float, high: float) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"expected a number in [{low:g}, {high:g}]")
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside [{low:g}, {high:g}]")
        return float(value)
    return check


def _choice(*options: str) -> Any:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"choose {', '.join(options)}")
        return str(value)
    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(map(str, value))
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError("expected a name or a list of names")
    return str(value)


class MetaEvalFile:
    """A meta-eval YAML file: the command's options as keys (``tsv``, ``run``, ``human``,
    ``metrics``, ``refs``, ``bootstrap``...), each checked as its flag is; relative paths
    resolve against the file's directory. ``tsv``/``jsonl`` may list several files (``[LP=]PATH``)
    to pool language pairs."""

    PATHS = {"run"}
    LISTS = {"human_file", "metric_file", "tsv", "jsonl"}
    CHECKS: dict[str, Any] = {
        "human": _text, "metrics": _text, "ref_systems": _text, "std_ref": _text,
        "refs": _choice("wmt", "exclude", "include"), "bootstrap": _int_in(0, MAX_BOOTSTRAP),
        "seed": _int_in(0, 2**32 - 1), "confidence": _float_in(0.5, 0.999), "recalibrate": _flag,
        "significance": _int_in(0, MAX_PERMUTATIONS), "pval": _float_in(0.0001, 0.5),
        "rank_by": _choice(*CLUSTER_STATISTICS),
    }

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
        known = cls.PATHS | cls.LISTS | set(cls.CHECKS)
        out: dict[str, Any] = {}
        for key, value in data.items():
            line = loc.line_of((key,))
            if key not in known:
                raise ConfigError(f"unknown key{suggest(str(key), sorted(known))}", file=str(path),
                                  line=line, key=str(key))
            if key in cls.PATHS:
                value = _near(path, str(value))
            elif key in cls.LISTS:
                items = value if isinstance(value, list) else [value]
                value = [_near_item(path, str(v)) for v in items]
            else:
                try:
                    value = cls.CHECKS[key](value)
                except ValueError as exc:
                    raise ConfigError(f"{exc} (got {value!r:.40})", file=str(path), line=line, key=str(key)) from None
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


def _labelled(item: str) -> tuple[str, Path]:
    """``[LABEL=]PATH`` -> (label, path); the label defaults to the file name's stem."""
    name, eq, path = item.partition("=")
    if eq and name and not Path(item).exists():
        return name, Path(path)
    return Path(item).stem, Path(item)


def _subset(table: Any, wanted: list[str] | None) -> Any:
    if wanted:
        unknown = [m for m in wanted if m not in table.metrics]
        if unknown:
            raise PromptweaveError(f"--metrics: no scores for {', '.join(unknown)}; have: {', '.join(table.metrics)}")
        table.metrics = {m: table.metrics[m] for m in wanted}
    return table


def _tables(tsv: list[str], jsonl: list[str], run: Path | None, human_file: list[str], metric_file: list[str],
            human: str | None, wanted: list[str] | None) -> tuple[list[tuple[str, Any]], str]:
    """The input tables, labelled (one per language pair when several files are pooled)."""
    from ..evaluators.mtme import read_score_jsonl, read_score_tsv

    kinds = [k for k, given in (("tsv", tsv), ("jsonl", jsonl), ("human-file", human_file), ("run", run)) if given]
    if len(kinds) != 1:
        raise PromptweaveError("give exactly one input: --tsv FILE, --jsonl FILE, --run DIR, "
                               "or --human-file with --metric-file (--tsv and --jsonl may repeat, to pool "
                               "language pairs)")
    if run is not None:
        table, name = load_from_run(run, human)
        return [(run.name, _subset(table, wanted))], name
    name = human or "mqm"
    if human_file:
        if not metric_file:
            raise PromptweaveError("--human-file needs at least one --metric-file NAME=PATH")
        return [("scores", _subset(load_from_score_files(list(human_file), list(metric_file), name), wanted))], name
    reader = read_score_tsv if tsv else read_score_jsonl
    out = [(label, reader(path, name, wanted)) for label, path in map(_labelled, tsv or jsonl)]
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise PromptweaveError("several inputs share a name; label them LP=PATH (e.g. --tsv zh-en=a.tsv --tsv en-de=b.tsv)")
    return out, name


@app.command("meta-eval")
def meta_eval(
    config: Optional[Path] = typer.Argument(None, help="a meta-eval YAML file holding these options (flags override it)"),
    tsv: Optional[list[str]] = typer.Option(None, "--tsv", help="[LP=]TSV with a header: system, seg_id, the human column, metric columns (repeat to pool language pairs)"),
    jsonl: Optional[list[str]] = typer.Option(None, "--jsonl", help="[LP=]JSONL rows {system, seg_id, <human>, <metric>...} (repeat to pool language pairs)"),
    run: Optional[Path] = typer.Option(None, "--run", help="a promptweave run directory (its mtme/ score files)"),
    human_file: Optional[list[str]] = typer.Option(None, "--human-file", help="mt-metrics-eval human scores: a *.seg.score file, optionally a *.sys.score file too"),
    metric_file: Optional[list[str]] = typer.Option(None, "--metric-file", help="[NAME=]PATH of an mt-metrics-eval *.seg.score or *.sys.score file (repeatable)"),
    human: Optional[str] = typer.Option(None, "--human", help="human score column (TSV/JSONL) or its name [default: mqm; for --run: the run's scoring.human]"),
    metric_names: Optional[str] = typer.Option(None, "--metrics", help="comma-separated metric columns to evaluate [default: all]"),
    refs: str = typer.Option("wmt", "--refs", help=_REFS_HELP),
    ref_systems: Optional[str] = typer.Option(None, "--ref-systems", help="comma-separated systems that are human translations [default: names like ref, refA, refB]"),
    std_ref: Optional[str] = typer.Option(None, "--std-ref", help="comma-separated references the metrics used, never scored as systems [default: read from metric names, e.g. refA for BLEU-refA]"),
    bootstrap: int = typer.Option(0, "--bootstrap", help="bootstrap resamples of segments for confidence intervals (0: none)"),
    seed: int = typer.Option(0, "--seed", help="random seed of the bootstrap and the permutation tests"),
    confidence: float = typer.Option(0.95, "--confidence", help="confidence level of the intervals"),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="re-optimise the acc_eq epsilon in every bootstrap resample (slower)"),
    significance: int = typer.Option(0, "--significance", help="permutations per metric pair for significance clusters (PERM-BOTH, as mt-metrics-eval; 0: none; 1000 is usual)"),
    rank_by: str = typer.Option("sys_pearson", "--rank-by", help=f"statistic of the significance clusters: {', '.join(CLUSTER_STATISTICS)}"),
    pval: float = typer.Option(0.05, "--pval", help="p-value threshold of the significance clusters"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Meta-evaluate metrics against human scores: system pairwise accuracy and soft pairwise
    accuracy, Kendall tau-b, acc_eq, Pearson; optionally significance clusters, pooled over
    language pairs when several inputs are given."""
    from ..evaluators.meta import meta_evaluate

    if config is not None:
        given = MetaEvalFile.load(config)
        tsv, jsonl = tsv or given.get("tsv"), jsonl or given.get("jsonl")
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
        significance = significance or int(given.get("significance", 0))
        rank_by = rank_by if rank_by != "sys_pearson" else str(given.get("rank_by", rank_by))
        pval = float(given.get("pval", pval)) if pval == 0.05 else pval
    # the flags get the same checks as the file's keys (one rule for both)
    for flag, value in (("refs", refs), ("rank_by", rank_by), ("bootstrap", bootstrap), ("seed", seed),
                        ("confidence", confidence), ("significance", significance), ("pval", pval)):
        try:
            MetaEvalFile.CHECKS[flag](value)
        except ValueError as exc:
            raise PromptweaveError(f"--{flag.replace('_', '-')} {value!r}: {exc}") from None
    tables, human = _tables(list(tsv or []), list(jsonl or []), run, list(human_file or []),
                            list(metric_file or []), human, _csv(metric_names))
    for label, table in tables:
        where = f" in {label}" if len(tables) > 1 else ""
        if not table.metrics:
            raise DataError(f"no metric scores found{where}; name the metric columns with --metrics")
        if table.n_items == 0 or bool(np.isnan(table.human).all()):
            raise DataError(f"no human scores ('{human}'){where}; check --human")
    std = _csv(std_ref) if std_ref is not None else None
    per_lp = [(label, table, [meta_evaluate(table, m, refs=refs, ref_systems=_csv(ref_systems),  # type: ignore[arg-type]
                                            std_refs=std, bootstrap=bootstrap, seed=seed,
                                            confidence=confidence, recalibrate=recalibrate)
                              for m in table.metrics])
              for label, table in tables]
    clusters = {label: cluster_metrics(table, rank_by, k=significance, seed=seed, pval=pval,
                                       ref_systems=_csv(ref_systems), std_refs=std)
                for label, table in tables if significance} if significance else {}
    pooled = pool(per_lp, refs, _csv(ref_systems), std) if len(per_lp) > 1 else None
    if as_json:
        payload: dict[str, Any]
        if len(per_lp) == 1:
            label, table, results = per_lp[0]
            payload = {"human": table.human_name, "items": table.n_items, "refs": refs,
                       "results": [r.to_dict() for r in results]}
            if clusters:
                payload["clusters"] = clusters[label].to_dict()
        else:
            payload = {"human": human, "refs": refs, "pooled": pooled,
                       "language_pairs": {label: {"items": table.n_items, "results": [r.to_dict() for r in results],
                                                  **({"clusters": clusters[label].to_dict()} if clusters else {})}
                                          for label, table, results in per_lp}}
        typer.echo(json.dumps(nan_to_null(payload), indent=2))
        return
    for label, table, results in per_lp:
        print_table(table, results, refs, _csv(ref_systems), label if len(per_lp) > 1 else None)
        if clusters:
            print_clusters(clusters[label])
    if pooled:
        print_pooled(pooled)

"""Paired comparison of systems: the first system is the baseline, every other one is tested
against it on the segments all systems share (sacrebleu's convention for ``--paired-bs`` and
``--paired-ar``). Systems come from run directories (:func:`systems_from_runs`) or from
``promptweave eval`` hypothesis files (:func:`eval_significance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import PromptweaveError
from .rundata import SACRE_METRICS, Run, columns, languages, metric_options
from .stats import TestResult, TestType, mean_stats, paired, sacrebleu_paired, seed_from_env


@dataclass
class SystemData:
    """One system's hypotheses, references and segment scores, keyed by item."""

    name: str
    hyps: dict[str, str] = field(default_factory=dict)
    refs: dict[str, Any] = field(default_factory=dict)  # str or list of str per item
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> item -> value


@dataclass
class MetricSpec:
    """How to test one column: ``sacre`` is a sacrebleu metric object (BLEU/chrF/TER) recomputed
    from the texts; otherwise the score is the mean of the segment values."""

    name: str
    higher_is_better: bool = True
    sacre: Any = None


@dataclass
class MetricComparison:
    metric: str
    higher_is_better: bool
    signature: str
    results: list[TestResult]


def _streams(refs: list[Any]) -> list[list[str | None]]:
    rows = [[r] if isinstance(r, str) else list(r) for r in refs]
    width = max((len(r) for r in rows), default=1)
    return [[r[k] if k < len(r) else None for r in rows] for k in range(width)]


def compare(systems: Sequence[SystemData], specs: Sequence[MetricSpec], test: TestType = "bs",
            n_samples: int = 0) -> list[MetricComparison]:
    """Test ``systems[1:]`` against ``systems[0]`` for every metric, on shared items."""
    if not systems:
        raise PromptweaveError("no systems to compare")
    out = []
    seed = seed_from_env()
    for spec in specs:
        if spec.sacre is not None:
            items = [i for i in systems[0].hyps if all(i in s.hyps for s in systems) and i in systems[0].refs]
            if not items:
                continue
            named = [(s.name, [s.hyps[i] for i in items]) for s in systems]
            sig, results = sacrebleu_paired(spec.sacre, named, _streams([systems[0].refs[i] for i in items]),
                                            test, n_samples)
        else:
            cols = [s.scores.get(spec.name, {}) for s in systems]
            items = [i for i in cols[0] if all(i in c for c in cols)]
            if not items:
                continue
            stats = [mean_stats([c[i] for i in items]) for c in cols]
            results = paired((systems[0].name, stats[0]), list(zip([s.name for s in systems[1:]], stats[1:])),
                             test, n_samples, seed)
            sig = (f"mean of {len(items)} segment scores|{'bs' if test == 'bs' else 'ar'}:"
                   f"{n_samples or (1000 if test == 'bs' else 10000)}|seed:{str(seed).lower()}")
        out.append(MetricComparison(spec.name, spec.higher_is_better, sig, results))
    return out


def systems_from_runs(runs: Sequence[Run]) -> tuple[list[SystemData], list[MetricSpec]]:
    """Every system of every run (a grouped run contributes one system per group); metrics are
    the columns all runs share. System names get the run's name when several runs are given."""
    from ..evaluators import create_metric

    systems: list[SystemData] = []
    shared: dict[str, MetricSpec] | None = None
    for run in runs:
        hyp_name = run.scores.get("hypothesis")
        ref_name = run.scoring.get("reference", "reference")
        cols = columns(run)
        specs: dict[str, MetricSpec] = {}
        for col in cols:
            spec = MetricSpec(col.name, col.higher_is_better)
            if col.kind == "metric" and col.name in SACRE_METRICS:
                src, tgt = languages(run)
                spec.sacre = create_metric(col.name, src, tgt, **metric_options(run, col.name))._corpus_metric
            specs[col.name] = spec
        shared = specs if shared is None else {k: v for k, v in shared.items() if k in specs}
        by_name: dict[str, SystemData] = {}
        for rec in run.records:
            sysname = run.system_of(rec)
            sd = by_name.setdefault(sysname, SystemData(_label(run, sysname, len(runs))))
            item = run.item_of(rec)
            hyp = run.value(rec, hyp_name)
            if rec.get("status") == "ok" and hyp is not None:
                sd.hyps[item] = str(hyp)
            ref = run.value(rec, ref_name)
            if ref is not None:
                sd.refs[item] = ref if isinstance(ref, list) else str(ref)
        for col in cols:
            for sysname, vals in col.values.items():
                if sysname in by_name:
                    by_name[sysname].scores[col.name] = vals
        systems += by_name.values()
    names = [s.name for s in systems]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PromptweaveError(f"two systems are named {sorted(dup)[0]!r}; compare runs with distinct directories")
    return systems, list((shared or {}).values())


def _label(run: Run, system: str, n_runs: int) -> str:
    """A system's name: its group (one run), the run directory (several runs), or both."""
    if n_runs == 1:
        return system
    return f"{run.dir.name}/{system}" if run.group_by else f"{run.dir.parent.name}/{run.dir.name}"


def eval_significance(systems: dict[str, list[str]], references: Any, results: list[dict[str, Any]],
                      metric_objects: dict[str, Any], test: TestType, n_samples: int = 0) -> list[MetricComparison]:
    """``promptweave eval --paired-bs/--paired-ar``: systems from hypothesis files (the first
    is the baseline), sacrebleu metrics recomputed from the texts, others from segment scores."""
    items = [str(i) for i in range(len(next(iter(systems.values()))))]
    refs = list(references) if references is not None else []
    data = []
    for name, hyps in systems.items():
        sd = SystemData(name, dict(zip(items, hyps)), dict(zip(items, refs)))
        for r in results:
            if r["system"] == name:
                sd.scores[r["metric"]] = {i: float(v) for i, v in zip(items, r["segments"]) if v is not None}
        data.append(sd)
    specs = []
    for r in results:
        if any(s.name == r["metric"] for s in specs):
            continue
        obj = metric_objects.get(r["metric"])
        specs.append(MetricSpec(r["metric"], r["higher_is_better"],
                                getattr(obj, "_corpus_metric", None) if r["metric"] in SACRE_METRICS else None))
    return compare(data, specs, test, n_samples)


def comparisons_to_dict(comps: Sequence[MetricComparison], test: TestType) -> dict[str, Any]:
    return {"test": test, "metrics": [{"metric": c.metric, "higher_is_better": c.higher_is_better,
                                       "signature": c.signature, "results": [r.to_dict() for r in c.results]}
                                      for c in comps]}


def format_cell(r: TestResult, digits: int = 4) -> str:
    """``score (μ = mean ± ci) (p = 0.0010)*`` as sacrebleu prints a paired-test cell."""
    text = f"{r.score:.{digits}f}"
    if r.mean is not None and r.ci is not None:
        text += f" (μ = {r.mean:.{digits}f} ± {r.ci:.{digits}f})"
    if r.p_value is not None:
        text += f" (p = {r.p_value:.4f}){'*' if r.p_value < 0.05 else ''}"
    return text


def print_table(comps: Sequence[MetricComparison], test: TestType) -> None:
    """The terminal table: systems down, metrics across; ``*`` marks p < 0.05 vs the baseline."""
    from rich.console import Console
    from rich.table import Table

    if not comps:
        raise PromptweaveError("no metric is shared by all systems on common segments; nothing to compare")
    name = "paired bootstrap resampling" if test == "bs" else "paired approximate randomization"
    table = Table("system", *[c.metric + ("" if c.higher_is_better else " ↓") for c in comps],
                  title=f"{name} (baseline: {comps[0].results[0].system}; * p < 0.05)")
    for i, r in enumerate(comps[0].results):
        label = ("Baseline: " if i == 0 else "") + r.system
        table.add_row(label, *[format_cell(c.results[i], 4 if abs(c.results[i].score) < 10 else 2) for c in comps])
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)
    console.print(table)
    for c in comps:
        console.print(f"{c.metric}: {c.signature} (n={c.results[0].n})", markup=False, highlight=False, soft_wrap=True)


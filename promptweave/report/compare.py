"""Paired comparison of systems: the first system is the baseline, every other one is tested
against it on the segments all systems share (sacrebleu's convention for ``--paired-bs`` and
``--paired-ar``). Systems come from run directories (:func:`systems_from_runs`) or from
``promptweave eval`` hypothesis files (:func:`eval_significance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import DataError, PromptweaveError
from .rundata import SACRE_METRICS, Run, columns, languages, metric_options
from .stats import Draws, TestResult, TestType, mean_stats, paired, sacrebleu_paired, seed_from_env


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
            n_samples: int = 0, draws: Draws | None = None) -> list[MetricComparison]:
    """Test ``systems[1:]`` against ``systems[0]`` for every metric, on shared items (``draws``:
    bootstrap indices shared with other comparisons of the same segments)."""
    draws = draws or Draws()
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
                             test, n_samples, seed, draws=draws)
            sig = (f"mean of {len(items)} segment scores|{'bs' if test == 'bs' else 'ar'}:"
                   f"{n_samples or (1000 if test == 'bs' else 10000)}|seed:{str(seed).lower()}")
        out.append(MetricComparison(spec.name, spec.higher_is_better, sig, results))
    return out


def systems_from_runs(runs: Sequence[Run]) -> tuple[list[SystemData], list[MetricSpec]]:
    """Every system of every run (a grouped run contributes one system per group); metrics are
    the columns all runs share. System names get the run's name when several runs are given."""
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
                spec.sacre = run_metric(run, col.name)
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
            ref = run.text(rec, ref_name)
            if ref is not None:
                sd.refs[item] = ref
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


def run_metric(run: Run, name: str) -> Any:
    """:func:`sacrebleu_metric` with the run's languages and options; options the manifest holds
    that the metric refuses are named with the manifest's path."""
    try:
        src, tgt = languages(run)
        return sacrebleu_metric(name, src, tgt, metric_options(run, name))
    except (PromptweaveError, TypeError, ValueError) as exc:
        raise DataError(f"{run.dir / 'manifest.json'}: field 'config.metrics' ({name}): {exc}") from None


def sacrebleu_metric(name: str, src_lang: str | None, tgt_lang: str | None, options: dict[str, Any]) -> Any:
    """The sacrebleu object behind our BLEU/chrF/TER metric, built with the run's options (the
    tokenizer default for the target language included)."""
    from ..evaluators import create_metric

    return getattr(create_metric(name, src_lang, tgt_lang, **options), "_corpus_metric")


def _label(run: Run, system: str, n_runs: int) -> str:
    """A system's name: its group (one run), the run directory (several runs), or both."""
    if n_runs == 1:
        return system
    return f"{run.dir.name}/{system}" if run.group_by else f"{run.dir.parent.name}/{run.dir.name}"


def eval_significance(data: Any, results: list[dict[str, Any]], src_lang: str | None, tgt_lang: str | None,
                      options: dict[str, dict[str, Any]], test: TestType, as_json: bool = False,
                      n_samples: int = 0) -> list[MetricComparison]:
    """``promptweave eval --paired-bs/--paired-ar``: the first hypothesis file is the baseline;
    BLEU/chrF/TER are recomputed by sacrebleu's ``PairedTest`` with the same options as the
    scores, other metrics are tested on their segment scores. Prints the table (or JSON)."""
    import json

    if len(data.systems) < 2:
        raise PromptweaveError("--paired-bs/--paired-ar need two or more --hyp files (or --hyp-field values); "
                               "the first is the baseline")
    n = len(next(iter(data.systems.values())))
    items = [str(i) for i in range(n)]
    refs = list(data.references) if data.references is not None else []
    systems = []
    for name, hyps in data.systems.items():
        sd = SystemData(name, dict(zip(items, hyps)), dict(zip(items, refs)))
        for r in results:
            if r["system"] == name:
                sd.scores[r["metric"]] = {i: float(v) for i, v in zip(items, r["segments"]) if v is not None}
        systems.append(sd)
    specs: dict[str, MetricSpec] = {}
    for r in results:
        if r["metric"] not in specs:
            sacre = None
            if r["metric"] in SACRE_METRICS:
                sacre = sacrebleu_metric(r["metric"], src_lang, tgt_lang, options.get(r["metric"], {}))
            specs[r["metric"]] = MetricSpec(r["metric"], r["higher_is_better"], sacre)
    comps = compare(systems, list(specs.values()), test, n_samples)
    if as_json:
        print(json.dumps(comparisons_to_dict(comps, test), indent=2, ensure_ascii=False))
    else:
        print_table(comps, test)
    return comps


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
    from rich.table import Table

    from ..terminal import console as make_console

    if not comps:
        raise PromptweaveError("no metric is shared by all systems on common segments; nothing to compare")
    name = "paired bootstrap resampling" if test == "bs" else "paired approximate randomization"
    table = Table("system", *[c.metric + ("" if c.higher_is_better else " ↓") for c in comps],
                  title=f"{name} (baseline: {comps[0].results[0].system}; * p < 0.05)")
    for i, r in enumerate(comps[0].results):
        label = ("Baseline: " if i == 0 else "") + r.system
        table.add_row(label, *[format_cell(c.results[i], 4 if abs(c.results[i].score) < 10 else 2) for c in comps])
    console = make_console(wide_when_piped=True)  # system names are text, never markup
    console.print(table)
    for c in comps:
        console.print(f"{c.metric}: {c.signature} (n={c.results[0].n})", soft_wrap=True)



def write_html(path: Any, comps: Sequence[MetricComparison], test: TestType, inputs: Sequence[str]) -> None:
    """The comparison as one offline HTML page (same styling as report.html, no script)."""
    from html import escape
    from pathlib import Path

    from .page import page, table, write_page

    head = [("system", "txt")] + [(c.metric + ("" if c.higher_is_better else " ↓"), "num") for c in comps]
    rows = []
    for i, r in enumerate(comps[0].results):
        row: list[tuple[str, Any]] = [(("<b>baseline</b> " if i == 0 else "") + escape(r.system), r.system)]
        for c in comps:
            res = c.results[i]
            cell = escape(format_cell(res, 4 if abs(res.score) < 10 else 2))
            if res.p_value is not None and res.p_value < 0.05:
                cell = f'<span class="sig">{cell}</span>'
            row.append((cell, res.score))
        rows.append(row)
    name = "paired bootstrap resampling" if test == "bs" else "paired approximate randomization"
    sigs = "".join(f"<li><code>{escape(c.metric)}</code>: <code>{escape(c.signature)}</code> "
                   f"(n = {c.results[0].n})</li>" for c in comps)
    body = (f"<header><h1>Comparison: {escape(name)}</h1><div class=\"meta\">inputs: "
            f"{escape(', '.join(inputs))}</div></header><section>"
            + table(head, rows, "compare-table", sortable=False)
            + f"<p class=\"muted\">score (μ = bootstrap mean ± 95% half-interval) (p = p-value against the baseline); "
              f"* and red: p &lt; 0.05.</p><ul>{sigs}</ul></section>")
    write_page(Path(path), page(f"compare: {name}", body, script=False))

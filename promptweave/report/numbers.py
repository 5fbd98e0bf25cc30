"""The figures people look for first, from a run's records and manifest: rows per system,
failed rows, parse failures, quality flags, latency percentiles per model, cumulative usage.
``report.md``, ``report.html`` and the terminal summary all take them from here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

USAGE_KEYS = ("requests", "calls", "cache_hits", "retries", "errors", "prompt_tokens", "completion_tokens", "cost")


def merge_usage(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Usage per model summed over a run and its resumes (the manifest keeps the running total)."""
    out: dict[str, Any] = {}
    for name in list(previous or {}) + [n for n in current if n not in (previous or {})]:
        a, b = (previous or {}).get(name) or {}, current.get(name) or {}
        merged: dict[str, Any] = {k: (a.get(k) or 0) + (b.get(k) or 0) for k in USAGE_KEYS}
        merged["cost"] = round(float(merged["cost"]), 6)
        statuses = Counter(a.get("by_status") or {})
        statuses.update(b.get("by_status") or {})
        merged["by_status"] = dict(statuses)
        out[name] = merged
    return out


def step_models(manifest: dict[str, Any]) -> dict[str, str]:
    """Step id -> the model name it calls (``default`` unless the step sets ``model:``)."""
    out = {}
    for entry in (manifest.get("config") or {}).get("steps") or []:
        if isinstance(entry, dict) and "id" in entry:
            out[str(entry["id"])] = str(entry.get("model") or "default")
    return out


def call_traces(output: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every model-call trace a step output holds (``call``, ``calls``, nested error records)."""
    if isinstance(output.get("call"), dict):
        yield output["call"]
    for t in listed(output.get("calls")):
        if isinstance(t, dict):
            yield t


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool, NaN, infinity or an integer
    too big for a float), else ``None``: what a score column may hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def listed(value: Any) -> list[Any]:
    """``value`` when it is a list, else empty: a record's list fields (flags, calls, removed
    text) read without trusting their type."""
    return value if isinstance(value, list) else []


def count(value: Any) -> int:
    """A token count as a whole number; 0 for anything that is not a finite number."""
    f = finite(value)
    return int(f) if f is not None else 0


def percentile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an already sorted list."""
    pos = q / 100 * (len(sorted_vals) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (pos - i)


def latency_by_model(records: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """p50/p90/p99/max seconds per model over every backend call recorded in the rows (cache hits
    have no latency; rows from earlier runs of a resumed run keep theirs)."""
    models = step_models(manifest)
    samples: dict[str, list[float]] = {}
    for rec in records:
        for step_id, out in (rec.get("outputs") or {}).items():
            if not isinstance(out, dict):
                continue
            for t in call_traces(out):
                lat = finite(t.get("latency_s"))
                if lat is not None and not t.get("cached"):
                    samples.setdefault(models.get(step_id, "default"), []).append(lat)
    out = {}
    for model, vals in samples.items():
        vals.sort()
        out[model] = {"calls": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
                      "p99": percentile(vals, 99), "max": vals[-1], "total": sum(vals)}
    return out


def quality_counts(records: list[dict[str, Any]], system_of: Any = None) -> dict[str, Any]:
    """Failed rows, parse failures per step, and quality flags (per flag, and per system)."""
    failed = [r for r in records if r.get("status") != "ok"]
    parse: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    by_system: dict[str, Counter[str]] = {}
    for rec in records:
        seen: set[str] = set()
        for step_id, out in (rec.get("outputs") or {}).items():
            if not isinstance(out, dict):
                continue
            if out.get("parse_status") == "failed":
                parse[step_id] += 1
            seen.update(str(f) for f in listed(out.get("flags")))
        flags.update(seen)
        if system_of is not None and seen:
            by_system.setdefault(str(system_of(rec)), Counter()).update(seen)
    failed_steps = Counter(str((r.get("error") or {}).get("step")) for r in failed)
    return {"rows": len(records), "failed_rows": len(failed), "failed_by_step": dict(failed_steps),
            "parse_failures": dict(parse), "flags": dict(flags),
            "flags_by_system": {k: dict(v) for k, v in by_system.items()}}


def rows_per_system(records: list[dict[str, Any]], system_of: Any) -> dict[str, dict[str, int]]:
    """``{system: {"n": rows, "ok": rows without an error}}`` in order of first appearance."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        d = out.setdefault(str(system_of(rec)), {"n": 0, "ok": 0})
        d["n"] += 1
        d["ok"] += rec.get("status") == "ok"
    return out


def fmt_score(name: str, value: Any) -> str:
    """Scores as people compare them: COMET-like (0-1) scores with 4 decimals, BLEU-like with 2."""
    if value is None:
        return "—"
    if not isinstance(value, float):
        return str(value)
    if name.lower() in ("bleu", "chrf", "ter"):
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) < 10 or "comet" in name.lower() else f"{value:.2f}"

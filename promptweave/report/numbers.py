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


class Latencies:
    """Seconds per backend call, per model, gathered row by row (cache hits have no latency;
    rows from earlier runs of a resumed run keep theirs)."""

    def __init__(self, models: dict[str, str]) -> None:
        self.models = models  # step id -> model name (:func:`step_models`)
        self.samples: dict[str, list[float]] = {}

    def add(self, rec: dict[str, Any]) -> None:
        for step_id, out in (rec.get("outputs") or {}).items():
            if not isinstance(out, dict):
                continue
            for t in call_traces(out):
                lat = finite(t.get("latency_s"))
                if lat is not None and not t.get("cached"):
                    self.samples.setdefault(self.models.get(step_id, "default"), []).append(lat)

    def merge(self, other: "Latencies") -> None:
        for model, vals in other.samples.items():
            self.samples.setdefault(model, []).extend(vals)

    def summary(self) -> dict[str, dict[str, float]]:
        """p50/p90/p99/max seconds per model."""
        out = {}
        for model, vals in self.samples.items():
            vals = sorted(vals)
            out[model] = {"calls": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
                          "p99": percentile(vals, 99), "max": vals[-1], "total": sum(vals)}
        return out


def latency_by_model(records: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """p50/p90/p99/max seconds per model over every backend call recorded in the rows."""
    lat = Latencies(step_models(manifest))
    for rec in records:
        lat.add(rec)
    return lat.summary()


class Quality:
    """Rows per system, failed rows, parse failures per step, and quality flags (per flag, and
    per system), gathered row by row."""

    def __init__(self) -> None:
        self.rows = self.failed = 0
        self.per_system: dict[str, dict[str, int]] = {}
        self.failed_steps: Counter[str] = Counter()
        self.parse: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()
        self.by_system: dict[str, Counter[str]] = {}

    def add(self, rec: dict[str, Any], system: str) -> None:
        ok = rec.get("status") == "ok"
        self.rows += 1
        d = self.per_system.setdefault(system, {"n": 0, "ok": 0})
        d["n"] += 1
        d["ok"] += ok
        if not ok:
            self.failed += 1
            self.failed_steps[str((rec.get("error") or {}).get("step"))] += 1
        seen: set[str] = set()
        for step_id, out in (rec.get("outputs") or {}).items():
            if not isinstance(out, dict):
                continue
            if out.get("parse_status") == "failed":
                self.parse[step_id] += 1
            seen.update(str(f) for f in listed(out.get("flags")))
        self.flags.update(seen)
        if seen:
            self.by_system.setdefault(system, Counter()).update(seen)

    def merge(self, other: "Quality") -> None:
        self.rows += other.rows
        self.failed += other.failed
        for system, d in other.per_system.items():
            mine = self.per_system.setdefault(system, {"n": 0, "ok": 0})
            mine["n"] += d["n"]
            mine["ok"] += d["ok"]
        self.failed_steps.update(other.failed_steps)
        self.parse.update(other.parse)
        self.flags.update(other.flags)
        for system, c in other.by_system.items():
            self.by_system.setdefault(system, Counter()).update(c)

    def counts(self) -> dict[str, Any]:
        return {"rows": self.rows, "failed_rows": self.failed, "failed_by_step": dict(self.failed_steps),
                "parse_failures": dict(self.parse), "flags": dict(self.flags),
                "flags_by_system": {k: dict(v) for k, v in self.by_system.items()}}


def fmt_score(name: str, value: Any) -> str:
    """Scores as people compare them: COMET-like (0-1) scores with 4 decimals, BLEU-like with 2."""
    if value is None:
        return "—"
    if not isinstance(value, float):
        return str(value)
    if name.lower() in ("bleu", "chrf", "ter"):
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) < 10 or "comet" in name.lower() else f"{value:.2f}"

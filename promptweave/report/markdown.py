"""``report.md`` pieces: model text made inert and short, and the headline-numbers section."""

from __future__ import annotations

import re
from typing import Any

from .numbers import Quality, latency_by_model

MD_CAP = 300
_BREAKS = re.compile("(?:\r\n|[\r\n\x0b\x0c\x85\u2028\u2029])")  # everything that may end a line
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}<>()#+!|~])")


def md_text(value: Any, cap: int = MD_CAP) -> str:
    """One line of Markdown that shows ``value`` literally: no markup, links, HTML or table
    breaks; newlines shown as ⏎; at most ``cap`` characters (with a note of what was cut)."""
    s = "" if value is None else str(value)
    cut = len(s) - cap
    s = s[:cap] if cut > 0 else s
    s = _BREAKS.sub(" ⏎ ", s)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return s + (f" … [{cut} more characters]" if cut > 0 else "")


def run_numbers(records: list[dict[str, Any]], manifest: dict[str, Any], system_of: Any) -> dict[str, Any]:
    """Rows per system, failed rows, parse failures, flags and latency per model (for scores.json,
    report.md and the terminal)."""
    quality = Quality()
    for rec in records:
        quality.add(rec, str(system_of(rec)))
    return {"rows_per_system": quality.per_system, **quality.counts(), "latency": latency_by_model(records, manifest)}


def numbers_lines(numbers: dict[str, Any]) -> list[str]:
    """The ``## Quality and latency`` section of report.md."""
    rows = max(1, numbers.get("rows", 0))
    lines = ["## Quality and latency", "", f"- failed rows: {numbers.get('failed_rows', 0)}"
             + "".join(f"; `{md_text(k, 60)}`: {v}" for k, v in numbers.get("failed_by_step", {}).items())]
    parse = numbers.get("parse_failures") or {}
    lines.append("- parse failures: " + (", ".join(f"`{md_text(k, 60)}` {v}" for k, v in parse.items()) or "0"))
    flags = numbers.get("flags") or {}
    lines.append("- quality flags: " + (", ".join(f"{md_text(k, 60)} {v} ({v / rows:.0%} of rows)"
                                                  for k, v in flags.items()) or "none"))
    per_sys = numbers.get("rows_per_system") or {}
    if len(per_sys) > 1:
        lines.append("- rows per system: " + ", ".join(f"{md_text(k, 60)} {v['ok']}/{v['n']}" for k, v in per_sys.items()))
    lat = numbers.get("latency") or {}
    if lat:
        lines += ["", "| model | calls | p50 s | p90 s | p99 s | max s |", "|---|---|---|---|---|---|"]
        for model, d in lat.items():
            lines.append(f"| {md_text(model, 60)} | {d['calls']} | {d['p50']:.3f} | {d['p90']:.3f} | "
                         f"{d['p99']:.3f} | {d['max']:.3f} |")
    return lines + [""]


def terminal_lines(numbers: dict[str, Any]) -> list[str]:
    """The same figures, two or three plain lines for the terminal summary."""
    if not numbers:
        return []
    rows = max(1, numbers.get("rows", 0))
    parse = ", ".join(f"{k} {v}" for k, v in (numbers.get("parse_failures") or {}).items()) or "0"
    flags = ", ".join(f"{k} {v} ({v / rows:.0%})" for k, v in (numbers.get("flags") or {}).items()) or "none"
    out = [f"failed rows {numbers.get('failed_rows', 0)} · parse failures {parse} · quality flags {flags}"]
    per_sys = numbers.get("rows_per_system") or {}
    if len(per_sys) > 1:
        out.append("rows per system: " + ", ".join(f"{k} {v['ok']}/{v['n']}" for k, v in per_sys.items()))
    lat = numbers.get("latency") or {}
    if lat:
        out.append("latency " + "; ".join(f"{m}: p50 {d['p50']:.3f}s p90 {d['p90']:.3f}s p99 {d['p99']:.3f}s "
                                          f"({d['calls']} calls)" for m, d in lat.items()))
    return out

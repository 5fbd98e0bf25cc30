"""The segment browser's data: one compact, capped JSON object per results row.

Sources and references are stored once per item (every system of an item shares them). Every
text a model wrote (outputs, raw replies, error spans) is capped here; escaping is the page's job
(:func:`promptweave.report.page.json_for_script` for the JSON blob, ``textContent`` in the
browser), so nothing here is ever interpreted as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .numbers import call_traces, listed
from .page import BlobParts, json_text, script_json

if TYPE_CHECKING:
    from .rundata import Column, Run

TEXT_CAP = 2000
RAW_CAP = 4000


def cap(value: Any, limit: int = TEXT_CAP) -> str | None:
    """``str(value)`` cut to ``limit`` characters with a note of what was cut; None stays None."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    return s if len(s) <= limit else s[:limit] + f" … [{len(s) - limit} more characters]"


def step_view(step_id: str, out: dict[str, Any]) -> dict[str, Any]:
    v: dict[str, Any] = {"id": step_id}
    value = out.get("value")
    v["v"] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else cap(value)
    if out.get("raw") is not None and out.get("raw") != value:
        v["raw"] = cap(out["raw"], RAW_CAP)
    if out.get("raw_count"):
        v["raw2"] = cap(out["raw_count"], RAW_CAP)
    if out.get("parse_status"):
        v["ps"] = out["parse_status"]
    if out.get("parse_error"):
        v["pe"] = cap(out["parse_error"], 300)
    if out.get("error"):
        v["err"] = cap(out["error"], 500)
    flags = [cap(f, 40) for f in listed(out.get("flags")) if f is not None]
    if flags:
        v["fl"] = flags
    removed = listed(out.get("removed"))
    if removed:
        v["rm"] = [cap(x, 300) for x in removed[:10]]
    errors = out.get("errors")
    if isinstance(errors, list) and errors:
        v["e"] = [{"sev": cap(e.get("severity"), 20), "cat": cap(e.get("category"), 80),
                   "span": cap(e.get("span"), 300)} for e in errors[:50] if isinstance(e, dict)]
    failed = [t for t in call_traces(out) if t.get("parse_status") == "failed" and t.get("raw")]
    if failed:
        v["fr"] = [cap(t["raw"], RAW_CAP) for t in failed[:5]]  # replies that did not parse
    return v


def segment_blob(run: Run, cols: list[Column]) -> BlobParts:
    """``{"items": {item: [source, reference]}, "rows": [...], "sc": {column: [score or null per
    row]}, "cols": [names], "hyp": name}`` for the page, as script-safe JSON: the rows
    :class:`~.pagedata.PageData` kept (as JSON text, joined and encoded once:
    :meth:`~.pagedata.PageData.blob_head`),
    then the scores the columns have for each row's system and item (the page's script gives
    each row its ``sc``)."""
    page = run.page_data()
    empty: dict[str, float] = {}
    sc = {}
    for c in cols:
        by_system = c.values
        sc[c.name] = [by_system.get(system, empty).get(item) for _, system, item in page.labels]
    tail = (',"sc":' + json_text(sc) + ',"cols":' + json_text([c.name for c in cols]) + ',"hyp":'
            + json_text(run.scores.get("hypothesis")) + "}")
    return BlobParts((page.blob_head(), script_json(tail)))

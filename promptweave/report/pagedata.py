"""What report.html needs of each of its rows, taken in one pass over the records.

Every section of the page used to walk the records again: the columns, the texts the
significance tests resample, the overview's counts, the MQM charts, the usage table and curves
and the segment browser, each in its own pass and each finding a row's system and item again.
:class:`PageData` takes each record once and keeps what every section needs. Records can be
taken in chunks by separate :class:`PageData` (in a worker process, say) and merged in order:
the result is the one pass over all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .numbers import Latencies, Quality, call_traces, count, finite, step_models
from .page import json_text, page_bytes, script_json
from .segments import cap, step_view


@dataclass(frozen=True)
class PageSpec:
    """What the per-row work needs to know of the run (its manifest and scores)."""

    name: str  # the run's name: its one system when rows are not grouped
    group_by: str | None
    human: str | None
    hyp: str | None  # the step or field whose value is the hypothesis
    source: str
    reference: str
    judges: tuple[str, ...]
    models: dict[str, str]  # step id -> model name
    prices: dict[str, dict[str, Any]]  # model name -> its price block

    @classmethod
    def of(cls, name: str, manifest: dict[str, Any], scores: dict[str, Any]) -> "PageSpec":
        scoring = dict((manifest.get("config") or {}).get("scoring") or {})
        return cls(name, scoring.get("group_by"), scoring.get("human"), scores.get("hypothesis"),
                   scoring.get("source", "source"), scoring.get("reference", "reference"),
                   tuple(scores.get("judges", {})), step_models(manifest), prices(manifest))


def prices(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Model name -> its ``price`` block (per million input/output tokens), where the config sets one."""
    cfg = manifest.get("config") or {}
    named = {"default": cfg.get("model") or {}, **(cfg.get("models") or {})}
    return {k: v["price"] for k, v in named.items() if isinstance(v, dict) and isinstance(v.get("price"), dict)}


def value(rec: dict[str, Any], name: str | None) -> Any:
    """A step's value or a field's, as ``finish`` reads them."""
    if not name:
        return None
    outputs = rec.get("outputs") or {}
    if name in outputs:
        return outputs[name].get("value")
    return (rec.get("fields") or {}).get(name)


def text(rec: dict[str, Any], name: str | None) -> str | list[str] | None:
    """A hypothesis or reference as a metric takes it: text, or a list of texts (several
    references); a number or an object in the record is its JSON-free ``str``."""
    v = value(rec, name)
    if v is None:
        return None
    return [str(x) for x in v] if isinstance(v, list) else str(v)


def system_of(rec: dict[str, Any], spec: PageSpec) -> str:
    return str(value(rec, spec.group_by)) if spec.group_by else spec.name


def item_of(rec: dict[str, Any]) -> str:
    return str((rec.get("fields") or {}).get("item", rec["key"]))


class PageData:
    """Feed with :meth:`add` in data order (or :meth:`merge` chunks in order)."""

    def __init__(self, spec: PageSpec, browse: bool = True) -> None:
        """``browse``: keep the segment browser's rows too (``compare`` needs only the scores)."""
        self.spec, self.browse = spec, browse
        self.labels: list[tuple[str, str, str]] = []  # (key, system, item) of every row, in order
        self.systems: dict[str, None] = {}  # in order of first appearance
        self.quality = Quality()
        self.latency = Latencies(spec.models)
        # judge steps and the human score: column -> system -> item -> value
        self.values: dict[str, dict[str, dict[str, float]]] = {c: {} for c in self._value_columns()}
        # what the significance tests resample: system -> item -> hypothesis / reference / row key
        self.hyps: dict[str, dict[str, str]] = {}
        self.refs: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, str]] = {}
        # MQM charts: judge step -> [segments per system, severities per system, categories per system]
        self.mqm: dict[str, list[dict[str, Any]]] = {j: [{}, {}, {}] for j in spec.judges}
        self.usage: list[tuple[float, int, float, float | None]] = []  # per row: x, tokens, cost, model seconds
        self.items: dict[str, list[str | None]] = {}  # item -> [source, reference] (its first row's)
        self.rows: list[str] = []  # the segment browser's rows as JSON, without their scores
        self._head: tuple[tuple[int, int], bytes] | None = None  # :meth:`blob_head`, once made

    def _value_columns(self) -> list[str]:
        return list(self.spec.judges) + ([self.spec.human] if self.spec.human else [])

    # ------------------------------------------------------------------ one row
    def add(self, rec: dict[str, Any]) -> None:
        spec = self.spec
        system, item = system_of(rec, spec), item_of(rec)
        ok = rec.get("status") == "ok"
        outputs = rec.get("outputs") or {}
        self.labels.append((rec["key"], system, item))
        self.systems.setdefault(system)
        self.quality.add(rec, system)
        self.latency.add(rec)
        for name in spec.judges:
            v = outputs.get(name, {}).get("value") if ok else None
            self._value(name, system, item, v)
        if spec.human:
            self._value(spec.human, system, item, value(rec, spec.human))
        if ok:
            hyp, ref = value(rec, spec.hyp), text(rec, spec.reference)
            if hyp is not None and ref:
                self.hyps.setdefault(system, {})[item] = str(hyp)
                self.refs.setdefault(system, {})[item] = ref
                self.keys.setdefault(system, {})[item] = rec["key"]
        for step_id, (n, sev, cats) in self.mqm.items():
            out = outputs.get(step_id) or {}
            errs = out.get("errors")
            if not isinstance(errs, list) or out.get("value") is None:
                continue
            n[system] = n.get(system, 0) + 1
            for e in errs:
                if not isinstance(e, dict):
                    continue
                level = str(e.get("severity") or "?").lower()
                by = sev.setdefault(system, {})
                by[level] = by.get(level, 0) + 1
                cat = str(e.get("category") or "?").split("/")[0].strip().lower() or "?"
                by = cats.setdefault(system, {})
                by[cat] = by.get(cat, 0) + 1
        self._usage(rec, outputs)
        if self.browse:
            self._browse(rec, outputs, system, item, ok)

    def _value(self, name: str, system: str, item: str, v: Any) -> None:
        v = finite(v)  # NaN, infinities and bools are no scores
        if v is not None:
            self.values[name].setdefault(system, {})[item] = v

    def _usage(self, rec: dict[str, Any], outputs: dict[str, Any]) -> None:
        lats: list[float] = []
        tokens, spent = 0, 0.0
        for step_id, o in outputs.items():
            if not isinstance(o, dict):
                continue
            price = self.spec.prices.get(self.spec.models.get(step_id, "default"))
            for t in call_traces(o):
                lat = finite(t.get("latency_s"))
                if lat is not None:
                    lats.append(lat)
                if t.get("cached"):
                    continue
                p_tok, c_tok = count(t.get("prompt_tokens")), count(t.get("completion_tokens"))
                tokens += p_tok + c_tok
                if price:
                    spent += (p_tok * float(price.get("input", 0)) + c_tok * float(price.get("output", 0))) / 1e6
        self.usage.append((float(rec.get("index", 0)), tokens, spent, sum(lats) if lats else None))

    def _browse(self, rec: dict[str, Any], outputs: dict[str, Any], system: str, item: str, ok: bool) -> None:
        spec = self.spec
        if item not in self.items:
            ref = text(rec, spec.reference)
            self.items[item] = [cap(value(rec, spec.source)), cap(" ‖ ".join(ref) if isinstance(ref, list) else ref)]
        steps = [step_view(sid, o) for sid, o in outputs.items() if isinstance(o, dict)]
        flags = sorted({f for s in steps for f in s.get("fl", [])})
        flags += [f"parse_failed:{s['id']}" for s in steps if s.get("ps") == "failed"]
        if not ok:
            flags.append("error")
        row: dict[str, Any] = {"i": rec.get("index", 0), "it": item, "sys": system, "hyp": cap(value(rec, spec.hyp)),
                               "fl": flags, "steps": steps}
        if not ok:
            err = rec.get("error") or {}
            row["err"] = cap(f"{err.get('step')}: {err.get('message')}", 500)
        self.rows.append(json_text(row))

    # ------------------------------------------------------------------ chunks
    def merge(self, other: "PageData") -> None:
        """Take ``other``'s rows (those that came after this one's)."""
        self.labels += other.labels
        for system in other.systems:
            self.systems.setdefault(system)
        self.quality.merge(other.quality)
        self.latency.merge(other.latency)
        for name, by_system in other.values.items():
            for system, vals in by_system.items():
                self.values[name].setdefault(system, {}).update(vals)
        for mine, theirs in ((self.hyps, other.hyps), (self.refs, other.refs), (self.keys, other.keys)):
            for system, by_item in theirs.items():
                mine.setdefault(system, {}).update(by_item)
        for step_id, (n, sev, cats) in other.mqm.items():
            my_n, my_sev, my_cats = self.mqm[step_id]
            for system, k in n.items():
                my_n[system] = my_n.get(system, 0) + k
            for mine, theirs in ((my_sev, sev), (my_cats, cats)):
                for system, counts in theirs.items():
                    by = mine.setdefault(system, {})
                    for key, k in counts.items():
                        by[key] = by.get(key, 0) + k
        self.usage += other.usage
        for item, pair in other.items.items():
            self.items.setdefault(item, pair)
        self.rows += other.rows

    def blob_head(self) -> bytes:
        """``{"items":{...},"rows":[...]`` of the segment browser's blob, script-safe
        (:func:`.page.script_json`) and encoded as the page is (:func:`.page.page_bytes`): the
        bulk of the page, which its scores do not change; made once (the page's own process
        makes it while the run's scores are worked out)."""
        key = (len(self.rows), len(self.items))
        if self._head is None or self._head[0] != key:
            text = script_json('{"items":' + json_text(self.items) + ',"rows":[' + ",".join(self.rows) + "]")
            self._head = (key, page_bytes(text))
        return self._head[1]

    def restrict(self, spec: PageSpec) -> bool:
        """Make this the page data of ``spec`` when it differs from this one's only in its judges
        (a run learns which of its steps are judges, those with numeric values, at its finish):
        this one's judges must include them. False if it cannot be."""
        mine = self.spec
        if (mine.name, mine.group_by, mine.human, mine.hyp, mine.source, mine.reference, mine.models, mine.prices) \
                != (spec.name, spec.group_by, spec.human, spec.hyp, spec.source, spec.reference, spec.models,
                    spec.prices) or not set(spec.judges) <= set(mine.judges):
            return False
        keep = set(spec.judges) | ({spec.human} if spec.human else set())
        self.values = {name: self.values[name] for name in self.values if name in keep}
        self.mqm = {name: self.mqm[name] for name in spec.judges}
        self.spec = spec
        return True


def page_record(raw: bytes, where: str) -> dict[str, Any]:
    """One line of ``results.jsonl`` (without its newline) as :func:`.rundata.read_records`
    takes it: parsed as the run store writes it, checked (:func:`.checks.check_record`)."""
    from .checks import check_record

    return check_record(json.loads(raw.decode("utf-8", "surrogatepass")), where)


def page_part(path: str, spec: PageSpec, start: int, stop: int, first: int) -> PageData:
    """The page data of the records in bytes ``start:stop`` of ``results.jsonl``, read as
    :func:`.rundata.read_records` reads them; the first is record ``first`` of the run, and
    each must have its place as its ``index`` (a compacted run), else ``ValueError``. For a
    process of a pool, while another takes the next part."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(stop - start)
    lines = data.split(b"\n")
    if lines[-1]:
        raise ValueError(f"{path}: bytes {start}:{stop} do not end a line")
    page = PageData(spec)
    for k, raw in enumerate(lines[:-1]):
        rec = page_record(raw, f"{path}:{first + k + 1}")
        if rec.get("index") != first + k:
            raise ValueError(f"{path}:{first + k + 1}: not record {first + k} of the run")
        page.add(rec)
    return page

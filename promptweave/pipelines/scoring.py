"""Scores of a run in one streaming pass over its records (data order), memory bounded.

Each record is read once. sacreBLEU metrics get per-segment statistics computed in chunks (in a
process pool on several cores, :mod:`promptweave.evaluators.segstats`); corpus scores come from
the summed statistics and segment scores from each row's own, so nothing re-reads the texts.
Judge summaries, the systems table, the mt-metrics-eval cells and the headline numbers are
running sums. What stays in memory per row: one float per metric and, when rows are grouped by
system, the row's key, item and statistics (to restrict systems to their common segments).

The output is identical to the in-memory reference (:mod:`.inmemory`), including the order of
``scores.json``'s ``segments`` (tests compare the two).
"""

from __future__ import annotations

import logging
import os
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import LoadedConfig
from ..data.keytable import KeyList
from ..evaluators import create_metric
from ..evaluators.base import Metric
from ..evaluators.faststats import warn_tokenized
from ..evaluators.segstats import (StatsSum, chunk_stats, corpus_from_sum, make_pool, metric_spec, supports_stats,
                                   tokenized_periods)
from ..envknobs import env_int
from ..report.numbers import call_traces, percentile, step_models

JUDGE_KINDS = {"mqm", "da"}
#: from this many rows on, sacreBLEU statistics are computed in a process pool
POOL_ROWS = env_int("PROMPTWEAVE_POOL_ROWS", 5000)
#: report.html covers at most this many rows (it says so); scores.json and report.md cover all
REPORT_ROWS = env_int("PROMPTWEAVE_REPORT_ROWS", 20000)
CHUNK = 2000  # segments per statistics job: big enough to amortise a process hop
#: ... and for the run's last rows, whose job the finish waits for: a fraction of a second at 2,000
TAIL_CHUNK = 400


def value_of(rec: dict[str, Any], name: str | None) -> Any:
    """A step's value or a field's (the step wins), as scoring reads them."""
    if name is None:
        return None
    if name in rec.get("outputs", {}):
        return rec["outputs"][name].get("value")
    return rec.get("fields", {}).get(name)


def hypothesis_field(loaded: LoadedConfig) -> str | None:
    if loaded.pipeline.scoring.hypothesis:
        return loaded.pipeline.scoring.hypothesis
    translate = [s.id for s in loaded.steps if s.kind == "translate"]
    return translate[-1] if translate else None


def metric_list(loaded: LoadedConfig) -> list[tuple[str, dict[str, Any]]]:
    return [(spec, {}) if isinstance(spec, str) else (next(iter(spec)), next(iter(spec.values())) or {})
            for spec in loaded.pipeline.metrics]


class SegmentTable(Mapping[str, dict[str, float]]):
    """``scores["segments"]`` without a dict per row: keys in ``scores.json`` order, one float
    array per metric. A key lookup builds a key index on first use (tests, small runs)."""

    def __init__(self, keys: Sequence[str], order: array, cols: list[tuple[str, Any, Any]]) -> None:
        self._keys, self._order, self._cols = keys, order, cols  # cols: (name, values, include(s))
        self._pos: dict[str, int] | None = None
        self.in_table = bytearray(len(keys))
        for s in order:
            self.in_table[s] = 1

    def items_in_order(self) -> Iterator[tuple[str, dict[str, float]]]:
        keys, row = self._keys, self._row
        for s in self._order:
            yield keys[s], row(s)

    def value(self, s: int, name: str) -> float | None:
        """Scored row ``s``'s ``name`` segment score, ``None`` when it has none in the table."""
        if s < 0 or not self.in_table[s]:
            return None
        for n, vals, inc in self._cols:
            if n == name:
                return vals[s] if inc(s) else None
        return None

    def _row(self, s: int) -> dict[str, float]:
        return {name: vals[s] for name, vals, inc in self._cols if inc(s)}

    def __getitem__(self, key: str) -> dict[str, float]:
        if self._pos is None:
            self._pos = {self._keys[s]: s for s in self._order}
        return self._row(self._pos[key])

    def __iter__(self) -> Iterator[str]:
        return (self._keys[s] for s in self._order)

    def __len__(self) -> int:
        return len(self._order)


@dataclass
class _JudgeTally:
    numeric: bool = True
    present: bool = False
    all: list[Any] = field(default_factory=lambda: [0, 0, 0, 0])  # sum, scored, parse failures, errors
    groups: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, out: dict[str, Any], group: str | None) -> None:
        v = out.get("value")
        if v is not None:
            self.present = True
            self.numeric &= isinstance(v, (int, float)) and not isinstance(v, bool)
        for acc in (self.all, self.groups.setdefault(group, [0, 0, 0, 0]) if group is not None else None):
            if acc is None:
                continue
            if v is not None:
                if self.numeric:  # a text step is no score: its sum is never asked for
                    acc[0] = acc[0] + v
                acc[1] += 1
            acc[2] += out.get("parse_status") == "failed"
            acc[3] += bool(out.get("error"))

    @staticmethod
    def summary(acc: list[Any]) -> dict[str, Any]:
        return {"mean": acc[0] / acc[1] if acc[1] else None, "scored": acc[1], "parse_failures": acc[2],
                "errors": acc[3]}


class RunTally:
    """Consume a run's records in data order (:meth:`add`), then :meth:`scores`."""

    def __init__(self, loaded: LoadedConfig, pool: Any = None, keep_stats: int = 0, live: int = 0) -> None:
        """``pool``: a process pool for the statistics (None: computed inline). ``live``: the
        records arrive while the run goes on, so never wait for the pool before :meth:`finish`
        and keep at most ``live`` statistics jobs on it (one: the row loop keeps the other core)."""
        self.loaded, self.pool, self.live = loaded, pool, live
        self._backlog: deque[tuple[str, int, tuple[Any, ...]]] = deque()  # statistics jobs not yet submitted
        p = loaded.pipeline
        self.sc = p.scoring
        self.hyp = hypothesis_field(loaded)
        self.metrics: list[tuple[str, Metric]] = [(n, create_metric(n, p.data.src_lang, p.data.tgt_lang, **o))
                                                  for n, o in metric_list(loaded)] if self.hyp else []
        self.specs = {n: metric_spec(n, p.data.src_lang, p.data.tgt_lang, o) for n, o in metric_list(loaded)}
        self.stat_names = [n for n, m in self.metrics if supports_stats(m)]
        self._streamed = frozenset(self.stat_names)  # metrics scored from per-row statistics
        self._metric = dict(self.metrics)
        self.periods = {n: 0 for n in self.stat_names}  # hypotheses ending in " ." (sacreBLEU's warning)
        self.rows = self.rows_ok = 0
        # scored rows (ok, with a hypothesis), numbered s = 0, 1, ...
        self.keys = KeyList()  # packed: no object per row (:mod:`..data.keytable`)
        self.sgroup = array("l")  # group rank of each scored row
        self.sitem: list[str] = []  # item of each scored row (grouped runs only)
        self.has_ref = bytearray()
        self.seg: dict[str, Any] = {n: array("d") for n in self.stat_names}
        self.sums: dict[str, dict[int, StatsSum]] = {n: {} for n in self.stat_names}
        self.rowstats: dict[str, list[Any]] = {n: [] for n in self.stat_names}  # grouped runs only
        self.nrefs: dict[str, set[int]] = {n: set() for n in self.stat_names}
        self.keep_stats = keep_stats
        self.kept: dict[str, list[Any]] = {n: [] for n in self.stat_names}
        self.texts: dict[str, tuple[list[str], list[str], list[str]]] = {}  # other metrics: their inputs
        self.group_rank: dict[str, int] = {}
        self.items_of: dict[int, set[str]] = {}
        self._chunk: list[tuple[str, str]] = []
        self.chunk = CHUNK  # rows per job (:class:`~.livetally.LiveTally` makes the last ones smaller)
        self._flight: deque[tuple[str, int, Any]] = deque()
        self.judges = {s.id: _JudgeTally() for s in loaded.steps}
        self.judge_kinds = {s.id for s in loaded.steps if s.kind in JUDGE_KINDS}
        self.table_groups: dict[str, None] = {}
        self.human: dict[str, list[Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.n_errors = 0
        # mt-metrics-eval cells (grouped runs): (system, item) -> (scored row or -1, ok, values)
        self.mt_items: dict[str, None] = {}
        self.mt_cells: dict[tuple[str, str], tuple[int, bool, dict[str, float]]] = {}
        # headline numbers
        self.models = step_models({"config": loaded.manifest_config()})
        self.per_system: dict[str, dict[str, int]] = {}
        self.parse: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()
        self.flags_by_system: dict[str, Counter[str]] = {}
        self.failed_steps: Counter[str] = Counter()
        self.latency: dict[str, array] = {}  # seconds per call, 8 bytes each

    # ------------------------------------------------------------------ one pass
    def add_all(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            self.add(rec)
        self.finish()

    def finish(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Wait for every statistics job (all of the pool's workers now); ``meanwhile`` runs
        once the last jobs are handed out, while the workers finish them."""
        if meanwhile is not None:
            if self.pool is not None:
                self._queue_chunk()
                self._submit(self._final_limit())
            meanwhile()
        self._flush(final=True)
        if any(n >= 100 for n in self.periods.values()):  # once for the run, as sacreBLEU once a corpus
            warn_tokenized()

    def add(self, rec: dict[str, Any]) -> None:
        sc, ok = self.sc, rec["status"] == "ok"
        self.rows += 1
        self.rows_ok += ok
        group = str(value_of(rec, sc.group_by)) if sc.group_by else None
        system = group if sc.group_by else self.loaded.pipeline.name
        self._numbers(rec, system, ok)
        if group is not None:
            self.table_groups.setdefault(group)
            if sc.human:
                v = value_of(rec, sc.human)
                acc = self.human.setdefault(group, [0.0, 0])
                if isinstance(v, (int, float)):
                    acc[0] += float(v)
                    acc[1] += 1
        for step_id, j in self.judges.items():
            j.add(rec.get("outputs", {}).get(step_id, {}), group)
        if not ok:
            self.n_errors += 1
            if len(self.errors) < 10:
                self.errors.append({"key": rec["key"], "error": rec.get("error", {})})
        elif len(self.samples) < 3:
            self.samples.append({"source": value_of(rec, "source"), "hyp": value_of(rec, self.hyp),
                                 "reference": value_of(rec, "reference")})
        s = -1
        hyp = value_of(rec, self.hyp) if ok and self.metrics else None
        if hyp is not None:
            s = self._scored(rec, str(hyp), group)
        if group is not None:
            item = str(rec.get("fields", {}).get("item", rec["key"]))
            self.mt_items.setdefault(item)
            vals = {}
            for step_id in self.judges:
                v = rec.get("outputs", {}).get(step_id, {}).get("value") if ok else None
                if isinstance(v, (int, float)):
                    vals[step_id] = float(v)
            if sc.human:
                hv = value_of(rec, sc.human)
                if isinstance(hv, (int, float)):
                    vals[sc.human] = float(hv)
            self.mt_cells[(group, item)] = (s, ok, vals)

    def _scored(self, rec: dict[str, Any], hyp: str, group: str | None) -> int:
        sc = self.sc
        s = len(self.keys)
        self.keys.append(rec["key"])
        label = group if group is not None else "all"
        rank = self.group_rank.setdefault(label, len(self.group_rank))
        self.sgroup.append(rank)
        if group is not None:
            item = str(rec.get("fields", {}).get("item", rec["key"]))
            self.sitem.append(item)
            self.items_of.setdefault(rank, set()).add(item)
        ref = str(value_of(rec, sc.reference) or "")
        self.has_ref.append(1 if ref else 0)
        for name, metric in self.metrics:
            if name not in self._streamed:
                hyps, refs, srcs = self.texts.setdefault(name, ([], [], []))
                hyps.append(hyp)
                refs.append(ref)
                srcs.append(str(value_of(rec, sc.source) or "") if sc.source else "")
        if self.stat_names:
            self._chunk.append((hyp, ref))
            if len(self._chunk) >= self.chunk:
                self._flush()
        return s

    # ------------------------------------------------------------------ statistics jobs
    def _flush(self, final: bool = False) -> None:
        """Queue the current chunk (one job per sacreBLEU metric); collect finished jobs in
        order. Jobs in flight stay few, so memory stays bounded; a live tally never waits."""
        self._queue_chunk()
        if self.pool is None:
            while self._backlog:
                name, start, args = self._backlog.popleft()
                self._take(name, start, *chunk_stats(*args))
            return
        if self.live and not final:
            self.poll()
            return
        limit = (2 * max(1, len(self.stat_names))) if not final else self._final_limit()
        while True:
            self._submit(limit)
            if not self._flight or not (final or self._backlog):
                break
            name, start, job = self._flight.popleft()
            self._take(name, start, *job.result())

    def _final_limit(self) -> int:
        """Jobs out at once at the finish: two per worker (every core is the tally's now)."""
        return 2 * getattr(self.pool, "_max_workers", 2)

    def _queue_chunk(self) -> None:
        """The rows gathered since the last chunk become jobs, one per sacreBLEU metric."""
        if self._chunk:
            start = len(self.keys) - len(self._chunk)
            hyps = [h for h, _ in self._chunk]
            streams: list[list[str | None]] = [[r for _, r in self._chunk]]
            self._chunk = []
            for name in self.stat_names:
                # no per-chunk tokenized-period warning: counted here, warned once at the finish
                self.periods[name] += tokenized_periods(self._metric[name], hyps)
                self._backlog.append((name, start, (self.specs[name], hyps, streams, True, False)))

    def poll(self) -> None:
        """Live tallies: collect the jobs done (in order) and keep ``live`` jobs on the pool, one
        more while more than a chunk's jobs wait (the workers fell behind: the finish would wait
        for the queue)."""
        flight = self._flight
        while flight and flight[0][2].done():
            name, start, job = flight.popleft()
            self._take(name, start, *job.result())
        self._submit(self.live + (len(self._backlog) > len(self.stat_names)))

    def _submit(self, limit: int) -> None:
        """Hand waiting chunks to the pool until ``limit`` jobs are out."""
        while self._backlog and len(self._flight) < limit:
            name, start, args = self._backlog.popleft()
            self._flight.append((name, start, self.pool.submit(chunk_stats, *args)))

    def _take(self, name: str, start: int, stats: list[Any], segs: list[float], nrefs: set[int]) -> None:
        self.seg[name].extend(segs)
        self.nrefs[name] |= nrefs
        if start < self.keep_stats:  # the rows report.html covers reuse them for its intervals
            self.kept[name].extend(stats[: self.keep_stats - start])
        if self.sc.group_by:
            self.rowstats[name].extend(stats)
            return
        acc = self.sums[name].setdefault(0, StatsSum())
        for st in stats:
            acc.add(st)

    def stats_by_key(self) -> dict[str, dict[str, Any]]:
        """Metric -> row key -> statistics, for the first ``keep_stats`` scored rows."""
        return {name: dict(zip(self.keys, rows)) for name, rows in self.kept.items()}

    # ------------------------------------------------------------------ numbers
    def _numbers(self, rec: dict[str, Any], system: str, ok: bool) -> None:
        d = self.per_system.setdefault(system, {"n": 0, "ok": 0})
        d["n"] += 1
        d["ok"] += ok
        if not ok:
            self.failed_steps[str((rec.get("error") or {}).get("step"))] += 1
        seen: set[str] = set()
        for step_id, out in (rec.get("outputs") or {}).items():
            if not isinstance(out, dict):
                continue
            if out.get("parse_status") == "failed":
                self.parse[step_id] += 1
            seen.update(str(f) for f in out.get("flags") or [])
            for t in call_traces(out):
                lat = t.get("latency_s")
                if isinstance(lat, (int, float)) and not t.get("cached"):
                    self.latency.setdefault(self.models.get(step_id, "default"), array("d")).append(float(lat))
        self.flags.update(seen)
        if seen:
            self.flags_by_system.setdefault(system, Counter()).update(seen)

    def numbers(self) -> dict[str, Any]:
        lat = {}
        for model, arr in self.latency.items():
            vals = sorted(arr)
            lat[model] = {"calls": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
                          "p99": percentile(vals, 99), "max": vals[-1], "total": sum(vals)}
        return {"rows_per_system": self.per_system, "rows": self.rows, "failed_rows": self.rows - self.rows_ok,
                "failed_by_step": dict(self.failed_steps), "parse_failures": dict(self.parse),
                "flags": dict(self.flags), "flags_by_system": {k: dict(v) for k, v in self.flags_by_system.items()},
                "latency": lat}

    # ------------------------------------------------------------------ results
    def scores(self) -> dict[str, Any]:
        """``scores.json``'s content; ``segments`` is a :class:`SegmentTable`."""
        sc = self.sc
        out: dict[str, Any] = {"rows": self.rows, "rows_ok": self.rows_ok, "rows_error": self.rows - self.rows_ok,
                               "hypothesis": self.hyp, "metrics": {}, "judges": {}, "segments": {}}
        labels = list(self.group_rank)  # rank -> label
        include = None
        if sc.group_by:
            out["comparison"], include, labels = self._common(labels)
        ranks = {label: self.group_rank[label] for label in labels}
        # scored rows of each kept group, in data order
        rows_of: dict[int, array] = {r: array("l") for r in ranks.values()}
        for s, g in enumerate(self.sgroup):
            if g in rows_of and (include is None or include(s)):
                rows_of[g].append(s)
        scored_groups: dict[str, set[int]] = {}
        cols: list[tuple[str, Any, Any]] = []
        for name, metric in self.metrics:
            per_group: dict[str, Any] = {}
            signature = metric.signature
            scored_groups[name] = set()
            for label, rank in ranks.items():
                rows = rows_of[rank]
                if metric.needs_reference and not any(self.has_ref[s] for s in rows):
                    per_group[label] = {"corpus": None, "note": f"no '{sc.reference}' field to score against"}
                    continue
                if name in self._streamed:  # (self.seg also gains other metrics' values below)
                    acc = self.sums[name].get(0) if not sc.group_by else StatsSum()
                    if sc.group_by:
                        st = self.rowstats[name]
                        for s in rows:
                            acc.add(st[s])
                    corpus = float(corpus_from_sum(metric, acc, self.nrefs[name]).score)
                    signature = metric.signature
                else:
                    hyps, refs, srcs = self.texts[name]
                    res = metric.score([hyps[s] for s in rows],
                                       [refs[s] for s in rows] if metric.needs_reference else None,
                                       [srcs[s] for s in rows] if sc.source else None)
                    corpus, signature = res.corpus, res.signature
                    vals = self.seg.setdefault(name, {})
                    vals.update(zip(rows, res.segments))
                per_group[label] = {"corpus": corpus, "n": len(rows)}
                scored_groups[name].add(rank)
            out["metrics"][name] = {"signature": signature, "higher_is_better": metric.higher_is_better,
                                    **({"corpus": per_group["all"]["corpus"]} if "all" in per_group else
                                       {"groups": per_group})}
            groups_in = scored_groups[name]
            cols.append((name, self.seg.get(name, {}), lambda s, g=groups_in: self.sgroup[s] in g))
        order = array("l")
        seen = bytearray(len(self.keys))
        for name, _ in self.metrics:
            for rank in ranks.values():
                if rank in scored_groups[name]:
                    for s in rows_of[rank]:
                        if not seen[s]:
                            seen[s] = 1
                            order.append(s)
        out["segments"] = SegmentTable(self.keys, order, cols)
        for step_id, j in self.judges.items():
            if step_id in self.judge_kinds or (j.present and j.numeric):
                summary = _JudgeTally.summary(j.all)
                if sc.group_by:
                    summary["groups"] = {k: _JudgeTally.summary(v) for k, v in sorted(j.groups.items())}
                out["judges"][step_id] = summary
        return out

    def _common(self, labels: list[str]) -> tuple[dict[str, Any], Any, list[str]]:
        sets = [self.items_of.get(self.group_rank[g], set()) for g in labels]
        union = set().union(*sets) if sets else set()
        common = set.intersection(*sets) if sets else set()
        info: dict[str, Any] = {"segments": len(union), "common_segments": len(common)}
        if common == union:
            return info, None, labels
        info["warning"] = (f"systems compared on the {len(common)} of {len(union)} segments that every system "
                           "has a scored row for (the rest failed or lack a hypothesis for some system)")
        logging.getLogger("promptweave.finish").warning("%s", info["warning"])
        kept = [g for g in labels if self.items_of.get(self.group_rank[g], set()) & common]
        return info, (lambda s: self.sitem[s] in common), kept

    def system_table(self, scores: dict[str, Any]) -> dict[str, dict[str, float | None]]:
        sc = self.sc
        if not sc.group_by:
            return {}
        table: dict[str, dict[str, float | None]] = {g: {} for g in self.table_groups}
        for name, m in scores["metrics"].items():
            for system, g in m.get("groups", {}).items():
                table.setdefault(system, {})[name] = g.get("corpus")
        for step_id, j in scores["judges"].items():
            for system, g in j.get("groups", {}).items():
                table.setdefault(system, {})[step_id] = g.get("mean")
        if sc.human:
            for system, (total, n) in self.human.items():
                table[system][sc.human] = total / n if n else None
        return table


def _ready() -> int:
    return os.getpid()


def live_pool(loaded: LoadedConfig, rows: int) -> Any:
    """The process pool a run's live tally computes sacreBLEU statistics on (None for small runs
    or runs without such metrics). Its workers are forked at once, while the process has no
    model threads yet."""
    if rows < POOL_ROWS or not any(name in ("bleu", "chrf", "ter") for name, _ in metric_list(loaded)):
        return None
    pool = make_pool()
    if pool is not None:
        for f in [pool.submit(_ready) for _ in range(getattr(pool, "_max_workers", 1))]:
            f.result()
    return pool

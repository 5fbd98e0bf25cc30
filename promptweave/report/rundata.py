"""Read a run directory (``manifest.json``, ``scores.json``, ``results.jsonl``) into score columns.

A *column* is anything with one number per row: a corpus metric (its segment scores from
``scores.json``), a judge or numeric step (the step's ``value``) or the human score field. Rows
are tied across systems by their ``item`` field (set when a data row is exploded into systems),
so paired tests compare the same source segments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ..errors import DataError
from .checks import check_manifest, check_record, check_scores
from . import pagedata
from .numbers import finite
from .pagedata import PageData, PageSpec

#: sacrebleu-backed metrics, whose corpus score is not a mean of segment scores
SACRE_METRICS = {"bleu", "chrf", "ter"}


@dataclass
class Column:
    """One score: where it comes from, its direction, and per system ``{item: value}``."""

    name: str
    kind: str  # "metric" | "judge" | "human"
    higher_is_better: bool = True
    corpus: dict[str, float | None] = field(default_factory=dict)  # per system, as scores.json has it
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # system -> item -> value


@dataclass
class Run:
    """A loaded run directory."""

    dir: Path
    manifest: dict[str, Any]
    scores: dict[str, Any]
    records: list[dict[str, Any]]
    total_rows: int | None = None  # set when ``records`` holds only the first rows of a bigger run
    seg_stats: dict[str, dict[str, Any]] | None = None  # metric -> row key -> sacreBLEU statistics
    row_keys: dict[str, dict[str, str]] = field(default_factory=dict)  # system -> item -> row key
    tests_cache: dict[str, Any] | None = None  # report.html's significance tests, to reuse
    # where a page written in a child process gets the tests its parent works out meanwhile
    # (the cache's form; None: work them out here)
    tests_from: Callable[[], dict[str, Any] | None] | None = field(default=None, repr=False)
    # or worked out here first and handed to the caller before the rest of the page (its form)
    tests_to: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    draws: Any = field(default=None, repr=False)  # the bootstrap's counts, if drawn ahead (stats.Draws)
    page: PageData | None = field(default=None, repr=False)  # the records taken once for every section

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.dir.name)

    @property
    def scoring(self) -> dict[str, Any]:
        return dict((self.manifest.get("config") or {}).get("scoring") or {})

    @property
    def group_by(self) -> str | None:
        return self.scoring.get("group_by")

    @property
    def human(self) -> str | None:
        return self.scoring.get("human")

    def value(self, rec: dict[str, Any], name: str | None) -> Any:
        """A step's value or a field's, as ``finish`` reads them."""
        return pagedata.value(rec, name)

    def text(self, rec: dict[str, Any], name: str | None) -> str | list[str] | None:
        """A hypothesis or reference as a metric takes it (:func:`.pagedata.text`)."""
        return pagedata.text(rec, name)

    def system_of(self, rec: dict[str, Any]) -> str:
        return str(self.value(rec, self.group_by)) if self.group_by else self.name

    @staticmethod
    def item_of(rec: dict[str, Any]) -> str:
        return pagedata.item_of(rec)

    def spec(self) -> PageSpec:
        return PageSpec.of(self.name, self.manifest, self.scores)

    def page_data(self, browse: bool = True) -> PageData:
        """The records taken once (:class:`.pagedata.PageData`); ``browse=False``: without the
        segment browser's rows, when nothing else asked for them first."""
        if self.page is None or (browse and not self.page.browse):
            page = PageData(self.spec(), browse)
            for rec in self.records:
                page.add(rec)
            self.page = page
        return self.page

    def systems(self) -> list[str]:
        """System names in order of first appearance (one, the run's name, when not grouped)."""
        return list(self.page_data(browse=False).systems)


def _regular(path: Path) -> None:
    """A FIFO or a device in a run directory would block or never end a read: refused."""
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: not a regular file; move it away and re-run the pipeline to rewrite it")


def _read_json(path: Path) -> dict[str, Any]:
    _regular(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; is {path.parent} a finished run directory?") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); re-run the pipeline to rewrite it") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply; re-run the pipeline to rewrite it") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); re-run the pipeline to rewrite it") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_records(results: Path, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` in data order (the first ``max_rows`` lines: data order
    once the run compacted it); a retried row keeps its last record, as RunStore does. A clear
    one-line :class:`DataError` for a line that is not a record (:func:`.checks.check_record`)."""
    records: list[dict[str, Any]] = []
    _regular(results)
    try:
        f = open(results, "rb")
    except OSError as exc:
        raise DataError(f"{results}: cannot be read ({exc.strerror or exc}); give a run directory") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if max_rows is not None and len(records) >= max_rows:
                break
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8", "surrogatepass"))  # as the run store writes them
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                if not raw.endswith(b"\n"):
                    break  # a torn last line from a killed run: the run itself trims it on resume
                why = (exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                       if isinstance(exc, RecursionError) else f"not UTF-8 at byte {exc.start}")
                raise DataError(f"{results}:{lineno}: not valid JSON ({why})") from None
            records.append(check_record(rec, f"{results}:{lineno}"))
    by_key = {r["key"]: r for r in records}
    return sorted(by_key.values(), key=lambda r: r.get("index") or 0)


def load_run(run_dir: Path | str, *, scores: dict[str, Any] | None = None, max_rows: int | None = None,
             records: list[dict[str, Any]] | None = None, page: PageData | None = None) -> Run:
    """Load a finished run; a clear one-line :class:`DataError` when something is missing.
    ``max_rows`` reads only the first rows of ``results.jsonl`` (data order once the run
    compacted it), so a huge run's page stays bounded; ``scores`` saves re-reading scores.json,
    ``records`` re-reading the records (:func:`read_records` of the same file and ``max_rows``),
    ``page`` reading them at all (what the page needs of them, taken while the run went on)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory; give a run directory (e.g. runs/NAME/RUN_ID)")
    results = d / "results.jsonl"
    if not results.exists():
        raise DataError(f"{d}: no results.jsonl; give a run directory (e.g. runs/NAME/RUN_ID)")
    ordered = [] if page is not None else records if records is not None else read_records(results, max_rows)
    scores = scores if scores is not None else check_scores(_read_json(d / "scores.json"), d / "scores.json")
    total = scores.get("rows")
    n = len(page.labels) if page is not None else len(ordered)
    capped = max_rows is not None and isinstance(total, int) and total > n
    manifest = check_manifest(_read_json(d / "manifest.json"), d / "manifest.json")
    return Run(d, manifest, scores, ordered, total if capped else None, page=page)


def columns(run: Run) -> list[Column]:
    """Every score column of the run, metrics first, then judges, then the human score."""
    out: list[Column] = []
    segs = run.scores.get("segments", {})
    for name, m in run.scores.get("metrics", {}).items():
        col = Column(name, "metric", bool(m.get("higher_is_better", True)))
        groups = m.get("groups") or ({run.systems()[0]: {"corpus": m.get("corpus")}} if run.systems() else {})
        col.corpus = {str(k): finite((v or {}).get("corpus")) for k, v in groups.items()}
        out.append(col)
    for step_id in run.scores.get("judges", {}):
        out.append(Column(step_id, "judge"))
    if run.human:
        out.append(Column(run.human, "human"))
    page = run.page_data(browse=False)
    for col in out:
        if col.kind == "metric":
            for key, system, item in page.labels:
                v = finite(segs.get(key, {}).get(col.name))  # NaN, infinities and bools are no scores
                if v is not None:
                    col.values.setdefault(system, {})[item] = v
        else:
            col.values = {system: dict(vals) for system, vals in page.values.get(col.name, {}).items()}
    for col in out:
        if col.kind != "metric":
            col.corpus = {s: (sum(v.values()) / len(v) if v else None) for s, v in col.values.items()}
    return out


def metric_options(run: Run, name: str) -> dict[str, Any]:
    """The options the run's config gave metric ``name`` (``metrics: [{bleu: {...}}]``)."""
    for spec in (run.manifest.get("config") or {}).get("metrics") or []:
        if isinstance(spec, dict) and name in spec:
            return dict(spec[name] or {})
    return {}


def languages(run: Run) -> tuple[str | None, str | None]:
    data = (run.manifest.get("config") or {}).get("data") or {}
    return data.get("src_lang"), data.get("tgt_lang")

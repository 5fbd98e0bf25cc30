"""Score tables and the files they come from: mt-metrics-eval score files, TSV and JSONL.

mt-metrics-eval keeps one score file per scorer and level: ``<lp>.<name>.seg.score`` holds
``system<TAB>score`` lines, one per system x segment, each system's segments in order, and
``<lp>.<name>.sys.score`` one ``system<TAB>score`` line per system. ``None`` is a missing score.

mt-metrics-eval names human translations ``refA``, ``refB``... and metrics after the references
they used (``BLEU-refA``, ``COMETKiwi-src``); :func:`default_ref_systems` and :func:`metric_refs`
read those conventions.

A :class:`ScoreTable` gathers the human scores and any number of metric scores of the same systems
on the same items (segments) as ``(systems, items)`` float matrices with NaN for missing scores;
:mod:`promptweave.evaluators.meta` computes correlations from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataError

Scores = dict[str, list[float | None]]  # system -> scores in segment order (one for .sys files)
#: TSV/JSONL columns that identify a row rather than score it
ID_FIELDS = ("system", "seg_id", "domain", "doc_id", "lp", "id", "item")


@dataclass
class ScoreTable:
    """Human and metric scores of ``systems`` (rows) on ``items`` (columns); NaN = missing.

    ``sys_human``/``sys_metrics`` hold system-level scores when they are given rather than the
    mean of the segment scores (e.g. corpus BLEU from a ``.sys.score`` file).
    """

    systems: list[str]
    human: np.ndarray
    metrics: dict[str, np.ndarray]
    human_name: str = "mqm"
    items: list[str] | None = None
    sys_human: np.ndarray | None = None
    sys_metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(self.human.shape[1])


def default_ref_systems(systems: Iterable[str]) -> set[str]:
    """Human translations by mt-metrics-eval naming: ``ref``, ``refA``, ``refB``, ``ref-x``..."""
    return {s for s in systems if s == "ref" or (s.startswith("ref") and (s[3:4].isupper() or s[3:4] in "-_"))}


def metric_refs(metric: str, systems: Iterable[str]) -> set[str]:
    """References a metric used, from mt-metrics-eval names (``BLEU-refA``, ``X-refA_refB``, ``X-src``)."""
    suffix = metric.rsplit("-", 1)[-1] if "-" in metric else ""
    return {r for r in suffix.split("_") if r in set(systems)}


def _parse_score(text: str, where: str) -> float | None:
    if text in ("None", "none", "null", "NaN", "nan", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: '{text}' is not a number (use None for a missing score)") from None
    if math.isinf(value):
        raise DataError(f"{where}: '{text}' is infinite; a score must be a finite number (None for a missing score)")
    return None if math.isnan(value) else value


def _read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; check the path")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None


def read_score_file(path: str | Path) -> Scores:
    """Read a ``.seg.score`` or ``.sys.score`` file into ``{system: [scores]}`` (file order)."""
    scores: Scores = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected 'system<TAB>score', got {line[:60]!r}")
        system, score = parts[0].strip(), parts[1].strip()
        scores.setdefault(system, []).append(_parse_score(score, f"{path}:{lineno}"))
    if not scores:
        raise DataError(f"{path}: no scores; expected lines of 'system<TAB>score'")
    return scores


def write_score_file(path: str | Path, scores: Mapping[str, Sequence[float | None]]) -> None:
    """Write ``{system: [scores]}`` in mt-metrics-eval format (``None`` for missing)."""
    with open(path, "w", encoding="utf-8") as f:
        for system, values in scores.items():
            for v in values:
                f.write(f"{system}\t{'None' if v is None or math.isnan(v) else repr(float(v))}\n")


def _matrix(scores: Mapping[str, Sequence[float | None]], systems: Sequence[str], n: int,
            what: str) -> np.ndarray:
    out = np.full((len(systems), n), np.nan)
    for r, system in enumerate(systems):
        values = scores.get(system)
        if values is None:
            continue
        if len(values) != n:
            raise DataError(f"{what}: system '{system}' has {len(values)} scores, expected {n} "
                            "(one per segment, as in the human scores)")
        out[r] = [np.nan if v is None else v for v in values]
    return out


def table_from_scores(human: Scores, metrics: Mapping[str, Scores], *, human_name: str = "mqm",
                      sys_human: Scores | None = None,
                      sys_metrics: Mapping[str, Scores] | None = None) -> ScoreTable:
    """Build a table from score-file dicts; systems are those of the human segment scores."""
    systems = list(human)
    n = len(human[systems[0]]) if systems else 0
    table = ScoreTable(systems=systems, human=_matrix(human, systems, n, human_name),
                       metrics={k: _matrix(v, systems, n, k) for k, v in metrics.items()},
                       human_name=human_name)
    if sys_human is not None:
        table.sys_human = _matrix(sys_human, systems, 1, f"{human_name} (sys)")[:, 0]
    for name, scores in (sys_metrics or {}).items():
        table.sys_metrics[name] = _matrix(scores, systems, 1, f"{name} (sys)")[:, 0]
    return table


def _floats(values: list[str], where: str, first_line: int) -> np.ndarray:
    """Parse a column of score strings; ``None``/empty become NaN."""
    missing = {"None", "none", "null", ""}
    try:
        out = np.array([math.nan if v in missing else float(v) for v in values], dtype=float)
        if not np.isinf(out).any():
            return out
    except ValueError:
        pass
    for k, v in enumerate(values):  # find the bad value and say where it is
        _parse_score(v, f"{where}:{first_line + k}")
    raise AssertionError("unreachable: some value failed above")


def _build_table(systems: list[str], items: list[str], columns: dict[str, np.ndarray], human: str,
                 where: str, lines: list[int] | None = None) -> ScoreTable:
    """Pivot long rows (one per system x item) into (systems, items) matrices."""
    sys_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    r = np.fromiter((sys_ids.setdefault(x, len(sys_ids)) for x in systems), np.intp, len(systems))
    c = np.fromiter((item_ids.setdefault(x, len(item_ids)) for x in items), np.intp, len(items))
    key = r * max(len(item_ids), 1) + c
    uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
    if uniq.size < key.size:
        k = int(np.flatnonzero(counts > 1)[0])
        dup = np.flatnonzero(key == uniq[k])[1]
        line = f":{lines[dup]}" if lines else ""
        raise DataError(f"{where}{line}: system '{systems[dup]}' segment '{items[dup]}' appears twice")
    mats = {}
    for name, values in columns.items():
        mats[name] = np.full((len(sys_ids), len(item_ids)), np.nan)
        mats[name][r, c] = values
    return ScoreTable(systems=list(sys_ids), human=mats.pop(human), metrics=mats, human_name=human,
                      items=list(item_ids))


def _pick_metrics(columns: Sequence[str], human: str, metrics: Sequence[str] | None, where: str) -> list[str]:
    if human not in columns:
        raise DataError(f"{where}: no human score column '{human}'; columns: {', '.join(columns)}")
    if metrics is None:
        return [c for c in columns if c != human and c not in ID_FIELDS]
    missing = [m for m in metrics if m not in columns]
    if missing:
        raise DataError(f"{where}: no column(s) {', '.join(missing)}; columns: {', '.join(columns)}")
    return list(metrics)


def read_score_tsv(path: str | Path, human: str = "mqm", metrics: Sequence[str] | None = None) -> ScoreTable:
    """Read a tab-separated table with a header: ``system``, ``seg_id``, the human column and
    metric columns (default: every column that is not an id field); ``None`` = missing."""
    lines = _read_text(path).splitlines()
    if not lines:
        raise DataError(f"{path}: empty file; expected a header row")
    header = lines[0].split("\t")
    for needed in ("system", "seg_id"):
        if needed not in header:
            raise DataError(f"{path}: header has no '{needed}' column; columns: {', '.join(header)}")
    names = _pick_metrics(header, human, metrics, str(path))
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    line_numbers = [k for k, line in enumerate(lines[1:], 2) if line.strip()]
    for lineno, fields in zip(line_numbers, rows):
        if len(fields) != len(header):
            raise DataError(f"{path}:{lineno}: {len(fields)} fields, header has {len(header)}")
    cols = list(zip(*rows)) if rows else [()] * len(header)
    columns = {name: _floats(list(cols[header.index(name)]), str(path), 2) for name in [human, *names]}
    return _build_table(list(cols[header.index("system")]), list(cols[header.index("seg_id")]),
                        columns, human, str(path), line_numbers)


def read_score_jsonl(path: str | Path, human: str = "mqm", metrics: Sequence[str] | None = None,
                     system_field: str = "system", item_field: str = "seg_id") -> ScoreTable:
    """Read JSONL rows ``{system, seg_id, <human>, <metric>...}``; metrics default to every other
    numeric (or null) field."""
    from ..data import iter_jsonl

    records = list(iter_jsonl(Path(path)))
    for lineno, row in records:
        if system_field not in row or item_field not in row:
            raise DataError(f"{path}:{lineno}: each row needs '{system_field}' and '{item_field}' fields")
    if not records:
        raise DataError(f"{path}: no rows")
    ids = (system_field, item_field)
    numeric = list(dict.fromkeys(k for _, row in records for k, v in row.items() if k not in ids
                                 and (v is None or isinstance(v, (int, float)) and not isinstance(v, bool))))
    names = _pick_metrics(numeric, human, metrics, str(path))

    def value(row: dict[str, Any], name: str, lineno: int) -> float:
        v = row.get(name)
        if v is None:
            return math.nan
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isinf(v):
            return float(v)
        parsed = _parse_score(str(v), f"{path}:{lineno} ({name})")
        return math.nan if parsed is None else parsed

    columns = {n: np.array([value(row, n, ln) for ln, row in records], dtype=float) for n in [human, *names]}
    return _build_table([str(row[system_field]) for _, row in records],
                        [str(row[item_field]) for _, row in records], columns, human, str(path),
                        [ln for ln, _ in records])


__all__ = ["ScoreTable", "Scores", "default_ref_systems", "metric_refs", "read_score_file", "read_score_jsonl", "read_score_tsv",
           "table_from_scores", "write_score_file"]

"""The shapes the report relies on in a run directory's files, checked once where they are read.

Every section of the page and ``compare`` read ``results.jsonl``, ``scores.json`` and
``manifest.json`` with ``.get`` chains; a value of the wrong JSON type (a list where an object
belongs, a string for a number) used to surface as an ``AttributeError`` deep in a section. Here
each file's fields are checked when it is loaded, so a damaged or hand-edited file gives one line
naming the file, the line or field, and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .numbers import USAGE_KEYS

_FIX = "re-run the pipeline to rewrite it"
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
               float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def check_record(rec: Any, where: str) -> dict[str, Any]:
    """One results row (``where``: ``file:line``) as the run store accepts it
    (:func:`~promptweave.pipelines.recovery.record_problem`), each step output an object."""
    from ..pipelines.recovery import record_problem

    problem = record_problem(rec)
    if problem is None:
        step, out = next(((k, v) for k, v in rec["outputs"].items() if not isinstance(v, dict)), (None, None))
        if step is not None:
            problem = f"'outputs.{step}' is {_kind(out)}, not an object"
    if problem is not None:
        raise DataError(f"{where}: not a results row ({problem}); {_FIX}")
    return rec


def _object(data: dict[str, Any], path: Path, dotted: str) -> dict[str, Any]:
    """``data[dotted]`` (a dotted path) when it is an object or absent (``{}``)."""
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return {}
    if not isinstance(value, dict):
        raise DataError(f"{path}: field '{dotted}' is {_kind(value)}, expected an object; {_FIX}")
    return value


def _objects(table: dict[str, Any], path: Path, dotted: str) -> None:
    for key, value in table.items():
        if not isinstance(value, dict):
            raise DataError(f"{path}: field '{dotted}.{key}' is {_kind(value)}, expected an object; {_FIX}")


def _score(value: Any, path: Path, dotted: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise DataError(f"{path}: field '{dotted}' is {_kind(value)}, expected a number; {_FIX}")


def check_scores(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``scores.json``: metrics, judges, segments and systems are objects of objects, corpus
    scores are numbers."""
    metrics = _object(data, path, "metrics")
    _objects(metrics, path, "metrics")
    for name, m in metrics.items():
        _score((m or {}).get("corpus"), path, f"metrics.{name}.corpus")
        groups = _object(data, path, f"metrics.{name}.groups")
        _objects(groups, path, f"metrics.{name}.groups")
        for g, v in groups.items():
            _score((v or {}).get("corpus"), path, f"metrics.{name}.groups.{g}.corpus")
    for name in ("judges", "systems", "segments"):
        _objects(_object(data, path, name), path, name)
    if data.get("rows") is not None and (isinstance(data["rows"], bool) or not isinstance(data["rows"], int)):
        raise DataError(f"{path}: field 'rows' is {_kind(data['rows'])}, expected a number; {_FIX}")
    if data.get("hypothesis") is not None and not isinstance(data["hypothesis"], str):
        raise DataError(f"{path}: field 'hypothesis' is {_kind(data['hypothesis'])}, expected a string; {_FIX}")
    return data


def check_manifest(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``manifest.json``: the config and its scoring/data blocks, models, usage, versions and the
    last run are objects; usage figures are numbers; the metrics and steps are lists."""
    for name in ("config", "config.scoring", "config.data", "models", "versions", "last_run", "executor"):
        _object(data, path, name)
    for name in ("models", "usage"):
        _objects(_object(data, path, name), path, name)
    for model, u in _object(data, path, "usage").items():
        for key in USAGE_KEYS:
            _score((u or {}).get(key), path, f"usage.{model}.{key}")
    config = _object(data, path, "config")
    for name in ("metrics", "steps"):
        if config.get(name) is not None and not isinstance(config[name], list):
            raise DataError(f"{path}: field 'config.{name}' is {_kind(config[name])}, expected a list; {_FIX}")
    scoring = _object(data, path, "config.scoring")
    for name in ("group_by", "human", "hypothesis", "source", "reference"):
        if scoring.get(name) is not None and not isinstance(scoring[name], str):
            raise DataError(f"{path}: field 'config.scoring.{name}' is {_kind(scoring[name])}, "
                            f"expected a field or step name; {_FIX}")
    return data

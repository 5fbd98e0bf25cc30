"""Checks of a loaded pipeline that need more than its own text: the data rows (step ids against
data fields, ``scoring`` fields against what rows and steps provide, values read as text or
numbers), the metrics built with their options, and what ``manifest.json`` may record of values
that came from the environment.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .registry import suggest
from .yamlio import Path_

if TYPE_CHECKING:
    from .config import LoadedConfig, PipelineConfig
    from .data.keytable import KeyTable

_ENV_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
#: names a step id cannot take: the variables every prompt sees, Jinja's globals and keywords
RESERVED_IDS = frozenset({
    "source", "reference", "src_lang", "tgt_lang", "src_lang_name", "tgt_lang_name", "examples", "domain",
    "range", "lipsum", "dict", "cycler", "joiner", "namespace", "loop", "self", "caller", "varargs", "kwargs",
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "elif",
    "for", "with", "set", "block", "macro", "call", "filter", "import", "include", "extends", "raw",
})


def _declares(metric: Any, flag: str) -> bool:
    """A metric's class-level ``needs_*`` flag; a property (COMET decides from its checkpoint,
    which may mean a download) counts as unknown here and is checked when scoring."""
    value = getattr(type(metric), flag, False)
    return value if isinstance(value, bool) else False


def _set_path(data: Any, path: Path_, value: Any) -> None:
    cur = data
    for part in path[:-1]:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return
    try:
        if isinstance(cur, dict) and path[-1] in cur or isinstance(cur, list) and path[-1] < len(cur):
            cur[path[-1]] = value
    except TypeError:
        return


def metric_specs(pipeline: PipelineConfig) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, options)]`` of the ``metrics:`` list."""
    out = []
    for spec in pipeline.metrics:
        name, opts = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
        out.append((name, dict(opts or {})))
    return out


def build_metrics(pipeline: PipelineConfig) -> list[Any]:
    """Every metric of the pipeline, built and checked (options, extras, a one-segment trial)."""
    from .evaluators import create_metric

    out = []
    for name, opts in metric_specs(pipeline):
        metric = create_metric(name, pipeline.data.src_lang, pipeline.data.tgt_lang, **opts)
        metric.check()
        out.append(metric)
    return out


def manifest_config(self: LoadedConfig) -> dict[str, Any]:
    """The config for ``manifest.json``: every value that came from ``${VAR}`` is written as
    it was in the file (``${VAR}``), unless all its variables are listed in ``record_env``."""
    out = copy.deepcopy(self.raw)
    if self.loc is None:
        return out
    allowed = set(self.pipeline.record_env)
    for path, original in self.loc.interpolated.items():
        if ".".join(map(str, path)) in self.overridden:
            continue
        names = set(_ENV_NAME.findall(original))
        if names and names <= allowed:
            continue
        _set_path(out, path, original)
    return out


def redact(self: LoadedConfig, value: Any) -> Any:
    """``value`` (e.g. the manifest) with every environment value the file interpolated
    replaced by ``${VAR}``, except variables listed in ``record_env``: a secret given as
    ``${VAR}`` reaches no file through model identities, step descriptions or argv either."""
    if self.loc is None:
        return value
    allowed = set(self.pipeline.record_env)
    # longest first, so that a value containing another is replaced whole; very short values
    # ("1", "en") would rewrite unrelated text and are no secrets
    pairs = sorted(((v, n) for n, v in self.loc.env_used.items() if n not in allowed and len(v) >= 4),
                   key=lambda p: -len(p[0]))

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            for secret, name in pairs:
                if secret in x:
                    x = x.replace(secret, "${" + name + "}")
            return x
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(value) if pairs else value


def load_checked_rows(self: LoadedConfig) -> list[tuple[str, dict[str, Any]]]:
    """The data rows, with the values the pipeline reads checked (text, sources, scores) and
    the step ids and ``scoring`` fields checked against the rows' fields."""
    return list(iter_checked_rows(self))


def iter_checked_rows(self: LoadedConfig, fields: bool = True,
                      keys: KeyTable | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """:func:`load_checked_rows`, streamed: each row is checked as it is read, and the checks that
    need every row (fields against step ids and ``scoring``; ``fields=False`` leaves them and the
    duplicate-key check out, for a pass over data already checked) run when the data ends,
    before the iterator stops. Only the keys seen stay in memory (in ``keys`` when given, at
    their rows' positions)."""
    from .data import iter_rows

    text, sources, numbers = _field_roles(self)
    check = FieldCheck(self) if fields else None
    for key, row in iter_rows(self.pipeline.data, self.base_dir, text_fields=text, source_fields=sources,
                              number_fields=numbers, unique=fields, seen=keys):
        if check is not None:
            check.add(key, row)
        yield key, row
    if check is not None:
        check.finish()


def _field_roles(self: LoadedConfig) -> tuple[set[str], set[str], set[str]]:
    step_ids = {s.id for s in self.steps}
    sc = self.pipeline.scoring
    sources = {str(getattr(s.config, "source", "source")) for s in self.steps if s.kind == "translate"}
    sources -= step_ids
    text = {f for f in (sc.reference, sc.source, "source", "reference") if f and f not in step_ids}
    hyp = sc.hypothesis
    if hyp and hyp not in step_ids and self.pipeline.metrics:
        text.add(hyp)
    for s in self.steps:
        translation = getattr(s.config, "translation", None)
        if isinstance(translation, str) and translation not in step_ids:
            text.add(translation)
    numbers = {sc.human} if sc.human else set()
    return text, sources, numbers


class FieldCheck:
    """The checks of the rows' fields against the steps and ``scoring``, fed one row at a time
    (:meth:`add`) and decided at the end (:meth:`finish`), in one pass over the data."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.fields: set[str] = set()
        self.no_lang: dict[str, str | None] = {lang: None for lang in ("src_lang", "tgt_lang")
                                               if getattr(loaded.pipeline.data, lang) is None}
        self.metrics = _built_metrics(loaded)
        step_ids = {s.id for s in loaded.steps}
        ref = loaded.pipeline.scoring.reference
        self.ref = ref if ref and ref not in step_ids and any(_declares(m, "needs_reference")
                                                              for m in self.metrics) else None
        self.lacking: str | None = None  # the first row without the reference the metrics need

    def add(self, key: str, row: dict[str, Any]) -> None:
        self.fields.update(map(str, row))
        for lang, first in self.no_lang.items():
            if first is None and row.get(lang) is None:
                self.no_lang[lang] = key
        if self.ref is not None and self.lacking is None:
            value = row.get(self.ref)
            if not (isinstance(value, str) and value.strip()):
                self.lacking = key

    def finish(self) -> None:
        self_, fields = self.loaded, self.fields
        for i, spec in enumerate(self_.steps):
            if spec.id in fields:
                raise self_.error_at(("steps", i, "id" if _has_id(self_, i) else spec.kind),
                                     f"step id '{spec.id}' is also a field of the data, which it would hide "
                                     f"from later steps and metrics; rename the step (e.g. '{spec.id}_out')")
        for lang, missing in self.no_lang.items():
            if lang in fields and missing is not None:  # row 1 renders fine in preflight; this row would not
                raise self_.error_at(("data",), f"row '{missing}' has no {lang} while other rows have one; "
                                                f"set data.{lang} as the default or give every row a {lang}")
        _check_scoring(self_, fields, self.metrics, self.lacking)


def _check_scoring(self: LoadedConfig, fields: set[str], metrics: list[Any], lacking: str | None) -> None:
    step_ids = {s.id for s in self.steps}
    known = sorted(fields | step_ids)
    sc = self.pipeline.scoring
    checks: list[tuple[str, str | None, bool]] = [
        ("hypothesis", sc.hypothesis, True), ("group_by", sc.group_by, True), ("human", sc.human, True)]
    if any(_declares(m, "needs_reference") for m in metrics):
        checks.append(("reference", sc.reference, True))
    if any(_declares(m, "needs_source") for m in metrics):
        checks.append(("source", sc.source, True))
    for name, value, required in checks:
        if value is None or not required:
            continue
        if value not in fields and value not in step_ids:
            raise self.error_at(("scoring", name) if _in_file(self, ("scoring", name)) else ("metrics",),
                                f"scoring.{name} '{value}' names no data field or step"
                                f"{suggest(value, known)}; fields and steps: {', '.join(known)[:300]}")
    if lacking is not None:  # it would be scored against an empty reference
        raise self.error_at(("data",), f"row '{lacking}' has no '{sc.reference}' (missing, null or empty) but "
                                       f"{', '.join(type(m).name for m in metrics if _declares(m, 'needs_reference'))} "
                                       "needs a reference for every row; fill it in or drop the row")
    hyp = _hypothesis(self)
    if self.pipeline.metrics and not hyp:
        raise self.error_at(("metrics",), "metrics need a hypothesis: add a translate step or set "
                                          "scoring.hypothesis to the field or step to score")
    spec = next((s for s in self.steps if s.id == hyp), None)
    if self.pipeline.metrics and spec is not None and not _makes_text(spec):
        raise self.error_at(("scoring", "hypothesis") if _in_file(self, ("scoring", "hypothesis")) else ("metrics",),
                            f"scoring.hypothesis '{hyp}' is a {spec.kind} step whose values are not text "
                            "(scores or parsed data); metrics need a translation: name a translate step, a "
                            "generate step with parser text/strip/first_line, or a data field")


def _makes_text(spec: Any) -> bool:
    if spec.kind == "translate":
        return True
    if spec.kind == "generate":
        return getattr(spec.config, "parser", "strip") in ("text", "strip", "first_line")
    return spec.kind not in ("mqm", "da")


def _hypothesis(self: LoadedConfig) -> str | None:
    if self.pipeline.scoring.hypothesis:
        return self.pipeline.scoring.hypothesis
    translate = [s.id for s in self.steps if s.kind == "translate"]
    return translate[-1] if translate else None


def _has_id(self: LoadedConfig, index: int) -> bool:
    return _in_file(self, ("steps", index, "id"))


def _in_file(self: LoadedConfig, path: Path_) -> bool:
    return self.loc is not None and tuple(path) in self.loc.lines


def _built_metrics(self: LoadedConfig) -> list[Any]:
    return build_metrics(self.pipeline)

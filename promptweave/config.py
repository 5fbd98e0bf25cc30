"""The pipeline file: pydantic models that forbid unknown keys, ``${ENV}`` interpolation,
``--set`` overrides, and one-line errors naming file:line and the key.

Everything that can be checked without a model call is checked at load (``promptweave
validate`` runs the same checks): step ids against reserved names, languages against the
BCP-47 tables, every metric built with its options, backend options, and, once the data is
read (:meth:`LoadedConfig.load_rows`), step ids against data fields and the ``scoring`` fields
against what the rows and steps provide. Relative paths (data, templates, ``output``,
``cache``) resolve against the pipeline file's directory.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import typing
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import config_checks
from .config_checks import RESERVED_IDS, build_metrics, metric_specs  # noqa: F401 - public names
from .errors import ConfigError, DataError, PromptweaveError
from .languages import LanguageError, normalize as normalize_language
from .models.spec import ModelConfig
from .pipelines.steps import StepConfig, steps as step_registry
from .registry import UnknownNameError, suggest
from .pipelines.executors.spec import ExecutorConfig
from .yamlio import LocatedYAML, Path_, apply_override, fmt_path

_FORBID = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(BaseModel):
    """Where rows come from."""

    model_config = _FORBID

    path: str | None = Field(None, description="data file (jsonl, json, tsv, csv), a HF dataset name or saved dir")
    format: Literal["auto", "jsonl", "json", "tsv", "csv", "text", "hf"] = "auto"
    files: dict[str, str] | None = Field(
        None, description="plain parallel text: field name -> file with one segment a line")
    fields: dict[str, str] = Field(default_factory=dict, description="our field name -> column in the file")
    src_lang: str | None = None
    tgt_lang: str | None = None
    limit: int | None = Field(None, ge=1)
    key: str | None = Field(None, description="field that identifies a row (default: row number)")
    explode: str | None = Field(
        None, description="a list field whose items become rows of their own (e.g. translations per system)")
    systems: dict[str, str] | None = Field(
        None, description="per-system hypothesis files (one segment a line), beside files: {source, reference}")
    split: str = Field("train", description="Hugging Face datasets split")
    hf_config: str | None = None
    null_values: list[str] = Field(default_factory=list, description="CSV/TSV cells that mean null, e.g. "
                                   "['None', 'NA']; by default every cell is text")

    @field_validator("src_lang", "tgt_lang")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return normalize_language(v)
        except LanguageError as exc:
            raise ValueError(str(exc)) from None


class ScoringConfig(BaseModel):
    """Which fields the corpus metrics read."""

    model_config = _FORBID

    hypothesis: str | None = Field(None, description="step id or field; default: the last translate step")
    reference: str | None = "reference"
    source: str | None = "source"
    group_by: str | None = Field(None, description="score each value of this field separately (e.g. system)")
    human: str | None = Field(None, description="field with human scores (e.g. mqm_score), exported beside "
                                                "the metric scores for meta-evaluation")


MetricSpec = str | dict[str, dict[str, Any]]


class PipelineConfig(BaseModel):
    model_config = _FORBID

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="extra named models for steps")
    data: DataConfig
    steps: list[dict[str, Any]] = Field(..., min_length=1)
    metrics: list[MetricSpec] = Field(default_factory=list)
    scoring: ScoringConfig = Field(default_factory=lambda: ScoringConfig())
    output: str = "runs"
    run_id: str | None = None
    cache: str | None = Field(None, description="cache file; default <output>/cache.sqlite; off (or false) disables")
    concurrency: int = Field(64, ge=1, description="rows in flight at once")
    executor: ExecutorConfig = Field(default_factory=lambda: ExecutorConfig(), description="local, or ray")
    record_env: list[str] = Field(default_factory=list, description="environment variables whose ${VAR} values "
                                  "may be written to manifest.json (by default the manifest keeps '${VAR}')")

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_switch(cls, v: Any) -> Any:
        # YAML 1.1 reads the documented `cache: off` (and no/false) as False: all mean "no cache"
        if v is False or (isinstance(v, str) and v.strip().lower() in {"off", "false", "no"}):
            return "off"
        if v is True or (isinstance(v, str) and v.strip().lower() in {"on", "true", "yes"}):
            return None  # the default cache file
        return v


@dataclass
class StepSpec:
    id: str
    kind: str
    config: StepConfig
    model: str | None = None


@dataclass
class LoadedConfig:
    """A validated pipeline plus where it came from."""

    pipeline: PipelineConfig
    steps: list[StepSpec]
    file: str
    base_dir: Path
    raw: dict[str, Any]
    loc: LocatedYAML | None = None
    overridden: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # output/cache resolve against the pipeline file's directory, like data and template
        # paths: the same command from another directory must find the same run and cache
        p = self.pipeline
        if not Path(p.output).expanduser().is_absolute():
            p.output = str(self.base_dir / Path(p.output).expanduser())
        cache = p.cache
        if isinstance(cache, str) and cache not in ("off", "") and not Path(cache).expanduser().is_absolute():
            p.cache = str(self.base_dir / Path(cache).expanduser())

    def manifest_config(self) -> dict[str, Any]:
        """The config for ``manifest.json``: values that came from ``${VAR}`` as written."""
        return config_checks.manifest_config(self)

    def redact(self, value: Any) -> Any:
        """``value`` with every environment value the file interpolated replaced by ``${VAR}``."""
        return config_checks.redact(self, value)

    def load_rows(self) -> list[tuple[str, dict[str, Any]]]:
        """The data rows, with the values the pipeline reads checked (text, sources, scores) and
        the step ids and ``scoring`` fields checked against the rows' fields."""
        return config_checks.load_checked_rows(self)

    def iter_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """:meth:`load_rows`, streamed (the checks that need every row run when the data ends)."""
        return config_checks.iter_checked_rows(self)

    def error_at(self, path: Path_, message: str) -> ConfigError:
        """A one-line error at the line of ``path`` (e.g. ``("data", "path")``) in the file."""
        line = self.loc.line_of(path) if self.loc else None
        return ConfigError(message, file=self.file, line=line, key=fmt_path(path))

    def step_error(self, index: int, exc: Exception) -> ConfigError:
        """Re-raise a step's set-up failure at the step's line in the file."""
        detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
        return self.error_at(("steps", index, self.steps[index].kind), detail)

    def config_hash(self) -> str:
        blob = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


_STEP_COMMON = {"id", "model"}
def _err(loc: LocatedYAML, path: Path_, message: str) -> ConfigError:
    return ConfigError(message, file=loc.file, line=loc.line_of(path), key=fmt_path(path) or None)


def _allowed_keys(model: type[BaseModel], path: Path_) -> list[str]:
    """The field names valid at ``path`` below ``model`` (for did-you-mean)."""
    cur: Any = model
    keyed = False  # the last field was a dict[str, Model]: the next part is a free key
    for part in path:
        if isinstance(part, int) or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            continue
        field = cur.model_fields.get(part)
        if field is None:
            if keyed:
                keyed = False
                continue
            return []
        keyed = typing.get_origin(field.annotation) is dict or "dict[" in str(field.annotation)
        cur = _model_in(field.annotation)
    return list(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _pydantic_error(loc: LocatedYAML, exc: ValidationError, model: type[BaseModel], prefix: Path_) -> ConfigError:
    err = exc.errors()[0]
    # drop pydantic's union-member tags ("str", "dict[str,...]", "function-after[...]") from the path
    path = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and (
        p.startswith("function-") or "[" in p or p in ("str", "int", "float", "bool", "list", "dict"))))
    kind, msg = err["type"], err["msg"]
    key = path[-1] if path else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(err["loc"][:-1]))
        hint = suggest(str(key), allowed) or (f"; allowed: {', '.join(allowed)}" if allowed else "")
        if len(path) == 1:
            hint += " (top-level keys starting with x- are free, e.g. for YAML anchors: x-defaults: &d {...})"
        return _err(loc, path, f"unknown key{hint}")
    if kind == "missing":
        return _err(loc, path, "required key is missing; add it")
    if kind == "value_error":
        return _err(loc, path, str(msg).removeprefix("Value error, "))
    value = err.get("input")
    shown = json.dumps(value, default=str)[:60] if not isinstance(value, dict) else "a mapping"
    return _err(loc, path, f"{msg} (got {shown})")


def parse_steps(loc: LocatedYAML, raw_steps: list[Any], models: set[str]) -> list[StepSpec]:
    out: list[StepSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw_steps):
        path: Path_ = ("steps", i)
        if not isinstance(entry, dict):
            raise _err(loc, path, "each step is a mapping like {id: hyp, translate: {...}}")
        kinds = [k for k in entry if k not in _STEP_COMMON]
        if not kinds:
            raise _err(loc, path, f"step names no kind; add one of: {', '.join(step_registry.names())}")
        if len(kinds) > 1:
            unknown = [k for k in kinds if k not in step_registry]
            if unknown:
                raise _err(loc, path + (unknown[0],),
                           f"unknown key{suggest(unknown[0], step_registry.names() + sorted(_STEP_COMMON))}")
            raise _err(loc, path, f"a step has exactly one kind, found {', '.join(kinds)}; split it into steps")
        kind = kinds[0]
        try:
            cls = step_registry.get(kind)
        except UnknownNameError as exc:
            raise _err(loc, path + (kind,), str(exc)) from None
        step_id = entry.get("id", kind)
        if not isinstance(step_id, str) or not step_id.isascii() or not step_id.isidentifier() \
                or step_id.startswith("_"):
            raise _err(loc, path + ("id",), "step id must be a name like hyp or mqm_score (ASCII letters, digits, _; "
                                            "not starting with _)")
        if step_id in RESERVED_IDS or keyword.iskeyword(step_id):
            raise _err(loc, path + ("id" if "id" in entry else kind,),
                       f"step id '{step_id}' is a reserved name (a prompt variable, data field or template "
                       f"keyword it would hide); choose another, e.g. '{step_id}_out'")
        if step_id in seen:
            raise _err(loc, path + ("id",), f"duplicate step id '{step_id}' (also steps[{seen[step_id]}]); "
                                            "give each step its own id")
        seen[step_id] = i
        model = entry.get("model")
        if model is not None and model not in models:
            raise _err(loc, path + ("model",), f"no model named '{model}'{suggest(str(model), sorted(models))}; "
                                               "define it under 'models:'")
        body = entry[kind] if entry[kind] is not None else {}
        if not isinstance(body, dict):
            raise _err(loc, path + (kind,), f"'{kind}' takes a mapping of options, e.g. {kind}: {{...}}")
        try:
            config = cls.Config.model_validate(body)
        except ValidationError as exc:
            raise _pydantic_error(loc, exc, cls.Config, path + (kind,)) from None
        out.append(StepSpec(step_id, kind, config, model))
    return out


def load_config(file: str | Path, overrides: list[str] | None = None) -> LoadedConfig:
    """Read, interpolate, override and validate a pipeline file."""
    from .data.files import read_bytes

    p = Path(file)
    try:
        raw_bytes = read_bytes(p, "pipeline file")
    except DataError as exc:
        raise ConfigError(str(exc).replace(f"pipeline file: {p} ", "the file ", 1), file=str(p)) from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8; save the file as UTF-8", file=str(p), line=line) from None
    return load_config_text(text, str(p), overrides, base_dir=p.resolve().parent)


def load_config_text(text: str, file: str = "<config>", overrides: list[str] | None = None,
                     base_dir: Path | None = None) -> LoadedConfig:
    loc = LocatedYAML(text, file)
    data = loc.data
    if not isinstance(data, dict):
        raise ConfigError("a pipeline file is a mapping with name, model, data and steps", file=file, line=1)
    if isinstance(data.get("executor"), str):  # `executor: ray` is {kind: ray}: --executor/--set then apply
        data["executor"] = {"kind": data["executor"]}
    overridden = set()
    for assignment in overrides or []:
        try:
            apply_override(data, assignment)
        except ConfigError as exc:
            raise ConfigError(exc.detail, file=file) from None
        overridden.add(assignment.partition("=")[0].strip())
    for key in [k for k in data if isinstance(k, str) and k.startswith("x-")]:
        del data[key]  # extension keys: a place for YAML anchors (x-defaults: &d {...}; <<: *d)
    try:
        pipeline = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(loc, exc, PipelineConfig, ()) from None
    models = {"default", *pipeline.models}
    specs = parse_steps(loc, pipeline.steps, models)
    _check_metrics(loc, pipeline)
    _check_backends(loc, pipeline)
    _check_images(loc, pipeline, specs)
    return LoadedConfig(pipeline, specs, file, (base_dir or Path.cwd()).resolve(), data, loc, frozenset(overridden))


def _check_backends(loc: LocatedYAML, pipeline: PipelineConfig) -> None:
    from .models import backends

    named = [(("model", "backend"), pipeline.model)] + [(("models", n, "backend"), m) for n, m in pipeline.models.items()]
    for path, cfg in named:
        if cfg.backend not in backends:
            raise _err(loc, path, f"unknown backend '{cfg.backend}'{suggest(cfg.backend, backends.names())}; "
                                  f"known: {', '.join(backends.names())}")
        # a backend module may check its options without building the model (no load, no network)
        factory = backends.get(cfg.backend)
        check = getattr(__import__(factory.__module__, fromlist=["_"]), "check_options", None)
        if callable(check):
            try:
                check(cfg)
            except PromptweaveError as exc:
                detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
                raise _err(loc, path[:-1] + ("options",), detail) from None


def _check_images(loc: LocatedYAML, pipeline: PipelineConfig, specs: list[StepSpec]) -> None:
    """A step that sends images (``needs_images``) needs a backend that can take them."""
    from .models.base import backend_accepts_images

    for i, spec in enumerate(specs):
        if not getattr(step_registry.get(spec.kind), "needs_images", False):
            continue
        cfg = pipeline.models[spec.model] if spec.model else pipeline.model
        if backend_accepts_images(cfg) is False:
            path: Path_ = ("steps", i, "model") if spec.model else ("model", "backend")
            raise _err(loc, path, f"step '{spec.id}' sends images, but backend '{cfg.backend}' cannot take them; "
                                  "use an OpenAI-compatible vision model (backend: openai) or scripted with "
                                  "options: {images: true}")


def _check_metrics(loc: LocatedYAML, pipeline: PipelineConfig) -> None:
    from .evaluators import create_metric, metrics as metric_registry

    for i, spec in enumerate(pipeline.metrics):
        name = spec if isinstance(spec, str) else next(iter(spec), "")
        if isinstance(spec, dict) and len(spec) != 1:
            raise _err(loc, ("metrics", i), "a metric entry is a name or {name: {options}}")
        if name not in metric_registry:
            raise _err(loc, ("metrics", i), f"unknown metric '{name}'{suggest(name, metric_registry.names())}; "
                                            f"known: {', '.join(metric_registry.names())}")
        opts = spec[name] if isinstance(spec, dict) else {}
        if opts is not None and not isinstance(opts, dict):
            raise _err(loc, ("metrics", i, name), f"options of '{name}' are a mapping, e.g. {name}: {{...}}")
        try:
            create_metric(name, pipeline.data.src_lang, pipeline.data.tgt_lang, **(opts or {})).check()
        except PromptweaveError as exc:
            detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
            raise _err(loc, ("metrics", i, name) if isinstance(spec, dict) else ("metrics", i), detail) from None
        except Exception as exc:  # noqa: BLE001 - a plugin metric's constructor: report, don't trace
            raise _err(loc, ("metrics", i), f"metric '{name}' cannot be built: {type(exc).__name__}: "
                                            f"{' '.join(str(exc).split())[:200]}") from None


def json_schema() -> dict[str, Any]:
    """JSON Schema of the pipeline file, with one entry per registered step kind."""
    schema = PipelineConfig.model_json_schema()
    variants = []
    for kind in step_registry.names():
        try:
            cls = step_registry.get(kind)
        except Exception:  # noqa: BLE001 - a broken plugin must not break the schema
            continue
        sub = cls.Config.model_json_schema()
        defs = sub.pop("$defs", {})
        schema.setdefault("$defs", {}).update(defs)
        variants.append({
            "type": "object",
            "properties": {"id": {"type": "string"}, "model": {"type": "string"}, kind: sub},
            "required": [kind],
            "additionalProperties": False,
        })
    schema["properties"]["steps"]["items"] = {"oneOf": variants}
    return schema

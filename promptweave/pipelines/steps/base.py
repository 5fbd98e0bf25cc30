"""The step contract. A step turns one row into one output record, with as many model calls
as it needs; the engine schedules rows concurrently and never runs a step's calls in a thread.

A step's output is a JSON-able dict. ``value`` is what later steps and templates see under the
step's id (``{{ hyp }}``); ``error`` (a string) marks the row as failed for this step, to be
retried with ``promptweave run --retry-errors``. Everything else (raw model text, parse status,
call traces) is kept in ``results.jsonl`` for tracing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ...languages import language_name

if TYPE_CHECKING:
    from ...models.runtime import ModelRuntime


class StepConfig(BaseModel):
    """Base of every step's YAML block: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass
class RunContext:
    """What every step of a run shares: named model runtimes, the pipeline file's directory
    (relative paths in step configs resolve against it) and the data's language pair."""

    models: dict[str, ModelRuntime]
    base_dir: Path = Path(".")
    src_lang: str | None = None
    tgt_lang: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def model(self, name: str | None = None) -> ModelRuntime:
        key = name or "default"
        key = self.aliases.get(key, key)
        if key not in self.models:
            raise KeyError(f"no model named '{key}'; define it under 'models:'")
        return self.models[key]


@dataclass
class Row:
    """One data row on its way through the steps."""

    index: int
    key: str
    fields: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def variables(self, run: RunContext) -> dict[str, Any]:
        """Template variables: the row's fields, the language pair, and each finished step's
        ``value`` under the step id."""
        src = self.fields.get("src_lang") or run.src_lang
        tgt = self.fields.get("tgt_lang") or run.tgt_lang
        out: dict[str, Any] = {}
        if src is not None:  # an unset language is undefined in templates, never the text "None"
            out.update(src_lang=src, src_lang_name=language_name(src))
        if tgt is not None:
            out.update(tgt_lang=tgt, tgt_lang_name=language_name(tgt))
        out.update(self.fields)
        for step_id, rec in self.outputs.items():
            out[step_id] = rec.get("value")
        return out


class Step(ABC):
    """Subclasses set ``Config`` (a :class:`StepConfig`) and implement :meth:`run`."""

    Config: ClassVar[type[StepConfig]] = StepConfig

    def __init__(self, step_id: str, config: StepConfig, run: RunContext) -> None:
        self.id, self.config, self.ctx = step_id, config, run

    def prepare(self) -> None:
        """Load templates and files once, before any row runs; raise PromptweaveError on bad input."""

    def preflight(self, row: Row) -> None:
        """Render this step's prompts for one row (earlier steps' values are placeholders) and
        raise :class:`~promptweave.errors.TemplateError` before any model call is made."""

    def describe(self) -> dict[str, Any]:
        """Facts for the manifest (template hashes, presets)."""
        return {}

    def fingerprint_inputs(self) -> dict[str, str]:
        """SHA-256 of each input :meth:`prepare` read (``{"template tsp": "ab12..."}``): a row
        stored under other inputs runs again on resume. A step that reads files declares them here."""
        return {}

    @abstractmethod
    async def run(self, row: Row) -> dict[str, Any]: ...

"""``translate``: the translation prompts of Peng et al. (2023) with output cleanup.

Presets (built-in templates): ``baseline``, ``tsp`` (task-specific system prompt), ``dsp``
(domain-specific; needs ``domain`` here or a ``domain`` field per row), ``cot-zero``,
``cot-one`` and ``icl`` (k-shot; both draw demonstrations from ``examples``). Any template
file works too.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Literal

from pydantic import Field

from ...data import load_rows
from ...errors import ConfigError, TemplateError
from .base import Row, StepConfig
from .generate import TemplateStep
from .textclean import clean_translation, wrong_language
from ...prompts import get_template

_NEEDS_EXAMPLES = {"icl", "cot-one"}


class ExamplesConfig(StepConfig):
    """Demonstrations for k-shot prompts, drawn from a dev file."""

    path: str
    k: int = Field(1, ge=0, le=64)
    fields: dict[str, str] = Field(default_factory=lambda: {"source": "source", "target": "reference"},
                                   description="source/target -> columns of the examples file")
    select: Literal["first", "random"] = "first"
    seed: int = 0


class TranslateConfig(StepConfig):
    prompt: str = Field("tsp", description="baseline | tsp | dsp | cot-zero | cot-one | icl | a template file")
    domain: str | None = Field(None, description="domain for dsp (e.g. news, biomedical)")
    examples: ExamplesConfig | None = None
    source: str = Field("source", description="row field holding the source text")
    temperature: float | None = Field(None, description="overrides model.temperature (the paper recommends 0)")
    max_tokens: int | None = Field(None, ge=1)
    cleanup: bool = Field(True, description="strip preambles, wrapping quotes and trailing notes")
    check_language: bool = True


class TranslateStep(TemplateStep):
    Config = TranslateConfig
    config: TranslateConfig

    def prepare(self) -> None:
        cfg = self.config
        self.template = get_template(cfg.prompt, self.ctx.base_dir)
        self.cot = cfg.prompt.startswith("cot") or "translation:" in self.template.source_text.lower()
        self.pool: list[dict[str, str]] = []
        if cfg.prompt in _NEEDS_EXAMPLES and cfg.examples is None:
            raise ConfigError(f"prompt '{cfg.prompt}' needs demonstrations; add examples: {{path: dev.jsonl, k: 4}}",
                              key=f"steps.{self.id}.translate.examples")
        if cfg.examples is not None:
            self.pool = self._load_examples(cfg.examples)

    def _load_examples(self, ex: ExamplesConfig) -> list[dict[str, str]]:
        from ...config import DataConfig

        mapping = {"source": ex.fields.get("source", "source"), "target": ex.fields.get("target", "reference")}
        rows = load_rows(DataConfig(path=ex.path, fields=mapping), self.ctx.base_dir)
        pool = [{"source": str(r["source"]), "target": str(r["target"])} for _, r in rows]
        if len(pool) < ex.k:
            raise ConfigError(f"examples file {ex.path} has {len(pool)} rows, fewer than k={ex.k}",
                              key=f"steps.{self.id}.translate.examples.k")
        return pool

    def examples_for(self, row: Row) -> list[dict[str, str]]:
        ex = self.config.examples
        if ex is None or ex.k == 0:
            return []
        source = str(row.fields.get(self.config.source, ""))
        candidates = [e for e in self.pool if e["source"] != source]  # never show the test item itself
        if ex.select == "first":
            return candidates[: ex.k]
        seed = int(hashlib.sha256(f"{ex.seed}:{row.key}".encode()).hexdigest()[:8], 16)
        return random.Random(seed).sample(candidates, min(ex.k, len(candidates)))

    def extra_vars(self, row: Row) -> dict[str, Any]:
        source = row.fields.get(self.config.source)
        if source is None:  # else the prompt would ask to translate the word "None"
            raise TemplateError(f"row {row.key} has no '{self.config.source}' field to translate; map a column "
                                f"to it (data.fields) or name another field (translate.source); the row has: "
                                f"{', '.join(map(str, row.fields))[:200]}")
        out: dict[str, Any] = {"source": source, "examples": self.examples_for(row)}
        domain = self.config.domain or row.fields.get("domain")
        if domain:
            out["domain"] = domain
        return out

    def fingerprint_inputs(self) -> dict[str, str]:
        out = super().fingerprint_inputs()
        if self.config.examples is not None:  # the demonstrations as loaded, whatever the file format
            blob = json.dumps(self.pool, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
            out[f"examples {self.config.examples.path}"] = hashlib.sha256(blob).hexdigest()
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"prompt": self.config.prompt, "domain": self.config.domain,
                  "k": self.config.examples.k if self.config.examples else 0})
        return d

    async def run(self, row: Row) -> dict[str, Any]:
        variables = self.row_vars(row)
        messages = self.render(variables)
        res = await self.call(messages, self.config.temperature, self.config.max_tokens)
        if not res.ok:
            return {"value": None, "error": res.error, "call": res.trace()}
        raw = res.text or ""
        text, removed = clean_translation(raw, cot=self.cot) if self.config.cleanup else (raw.strip(), [])
        flags: list[str] = []
        if not text.strip():
            flags.append("empty")
        elif self.config.check_language and wrong_language(text, variables.get("tgt_lang"),
                                                             str(variables.get("source") or "")):
            flags.append("wrong_language")
        if res.finish_reason == "length":
            flags.append("truncated")
        return {"value": text, "raw": raw, "removed": removed, "flags": flags, "call": res.trace()}

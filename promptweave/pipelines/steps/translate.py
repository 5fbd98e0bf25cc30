"""``translate``: the translation prompts of Peng et al. (2023) with optional output cleanup.

Presets (built-in templates): ``baseline``, ``tsp`` (task-specific system prompt), ``dsp``
(domain-specific; needs ``domain`` here or a ``domain`` field per row), ``cot-zero``,
``cot-one`` and ``icl`` in the paper's formats (``cot-one`` and ``icl`` draw demonstrations
from ``examples``), and ``icl-chat`` (demonstrations as chat turns). Any template file works too.

``cot: true`` (the default for the CoT presets, and only for them) keeps the complete sentence
that ends a step-by-step reply. ``cleanup`` strips preambles, quotes and notes; off, the reply is
kept as is and ``cleanup_would_change`` says what cleanup would have removed.
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
from .textclean import clean_translation, final_sentence, wrong_language
from ...prompts import get_template

_NEEDS_EXAMPLES = {"icl", "icl-chat", "cot-one"}
_COT_PRESETS = {"cot-zero", "cot-one"}


class ExamplesConfig(StepConfig):
    """Demonstrations for k-shot prompts, drawn from a dev file."""

    path: str
    k: int = Field(1, ge=0, le=64)
    fields: dict[str, str] = Field(default_factory=lambda: {"source": "source", "target": "reference"},
                                   description="source/target (and steps, for cot-one) -> columns of the examples file")
    select: Literal["first", "random"] = "first"
    seed: int = 0


class TranslateConfig(StepConfig):
    prompt: str = Field("tsp", description="baseline | tsp | dsp | cot-zero | cot-one | icl | icl-chat | a template file")
    domain: str | None = Field(None, description="domain for dsp (e.g. news, biomedical)")
    examples: ExamplesConfig | None = None
    source: str = Field("source", description="row field holding the source text")
    temperature: float | None = Field(None, description="overrides model.temperature (the paper recommends 0)")
    max_tokens: int | None = Field(None, ge=1)
    cot: bool | None = Field(None, description="the reply reasons step by step: keep its final complete sentence "
                                                "(default: true for cot-zero/cot-one, else false)")
    cleanup: bool = Field(True, description="strip preambles, wrapping quotes and trailing notes (false: keep "
                                            "the reply; what cleanup would change is still reported)")
    check_language: bool = True


class TranslateStep(TemplateStep):
    Config = TranslateConfig
    config: TranslateConfig

    def prepare(self) -> None:
        cfg = self.config
        self.template = get_template(cfg.prompt, self.ctx.base_dir)
        self.cot = cfg.cot if cfg.cot is not None else cfg.prompt in _COT_PRESETS
        self.pool: list[dict[str, str]] = []
        if cfg.prompt in _NEEDS_EXAMPLES and cfg.examples is None:
            raise ConfigError(f"prompt '{cfg.prompt}' needs demonstrations; add examples: {{path: dev.jsonl, k: 4}}",
                              key=f"steps.{self.id}.translate.examples")
        if cfg.examples is not None:
            self.pool = self._load_examples(cfg.examples)

    def _load_examples(self, ex: ExamplesConfig) -> list[dict[str, str]]:
        from ...config import DataConfig

        mapping = {"source": ex.fields.get("source", "source"), "target": ex.fields.get("target", "reference")}
        rows = load_rows(DataConfig(path=ex.path, fields=mapping), self.ctx.base_dir, source_fields={"source"},
                         text_fields={"target"})
        steps_col = ex.fields.get("steps", "steps")
        pool: list[dict[str, Any]] = []
        for _, r in rows:
            item: dict[str, Any] = {"source": str(r["source"]), "target": str(r["target"])}
            if r.get(steps_col) is not None:
                item["steps"] = _phrase_pairs(r[steps_col], ex.path)
            pool.append(item)
        if self.config.prompt == "cot-one" and not any("steps" in e for e in pool):
            raise ConfigError(f"prompt 'cot-one' shows a step-by-step demonstration: give the rows of {ex.path} a "
                              f"'{steps_col}' field, a list of [\"phrase\", \"translation\"] pairs or "
                              f"\"phrase - translation\" strings", key=f"steps.{self.id}.translate.examples")
        if self.config.prompt == "cot-one":
            pool = [e for e in pool if "steps" in e]
        if len(pool) < ex.k:
            raise ConfigError(f"examples file {ex.path} has {len(pool)} rows, fewer than k={ex.k}",
                              key=f"steps.{self.id}.translate.examples.k")
        return pool

    def examples_for(self, row: Row) -> list[dict[str, Any]]:
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
        extra: dict[str, Any] = {}
        text, removed = raw.strip(), []
        if self.cot:  # the complete sentence, not the reasoning before it
            text, removed = final_sentence(text)
        cleaned, changes = clean_translation(text)
        if self.config.cleanup:
            text, removed = cleaned, removed + changes
        elif changes:  # kept as the model wrote it; say what cleanup would have done
            extra = {"cleanup_would_change": changes, "cleaned": cleaned}
        flags: list[str] = []
        if not text.strip():
            flags.append("empty")
        elif self.config.check_language and wrong_language(text, variables.get("tgt_lang"),
                                                             str(variables.get("source") or "")):
            flags.append("wrong_language")
        if res.finish_reason == "length":
            flags.append("truncated")
        return {"value": text, "raw": raw, "removed": removed, **extra, "flags": flags, "call": res.trace()}


def _phrase_pairs(value: Any, where: str) -> list[list[str]]:
    """A demonstration's steps as ``[phrase, translation]`` pairs (from pairs or "a - b" strings)."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'steps' must be a list of [\"phrase\", \"translation\"] pairs or "
                          f"\"phrase - translation\" strings, not {type(value).__name__}")
    pairs: list[list[str]] = []
    for item in value:
        if isinstance(item, str) and " - " in item:
            a, b = item.split(" - ", 1)
            pairs.append([a.strip(), b.strip()])
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            pairs.append([item[0], item[1]])
        else:
            raise ConfigError(f"{where}: a step must be [\"phrase\", \"translation\"] or \"phrase - translation\", "
                              f"not {item!r:.80}")
    return pairs

"""``generate``: render any template, call the model once, optionally parse the reply."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field

from ...models.base import Message
from ...prompts import PromptTemplate, get_template
from .base import Row, Step, StepConfig

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


class GenerateConfig(StepConfig):
    template: str = Field(..., description="built-in template name or path to a template file")
    vars: dict[str, Any] = Field(default_factory=dict, description="extra template variables")
    parser: Literal["text", "strip", "first_line", "json", "number"] = "strip"
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)


def parse_reply(text: str, parser: str) -> tuple[Any, str]:
    """(value, parse_status). Never raises; a failure keeps value None."""
    if parser == "text":
        return text, "ok"
    if parser == "strip":
        return text.strip(), "ok"
    if parser == "first_line":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return (lines[0], "ok") if lines else (None, "failed")
    if parser == "number":
        found = _NUMBER.findall(text)
        return (float(found[0]), "ok") if len(found) == 1 else (None, "failed")
    if parser == "json":
        body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        try:
            return json.loads(body), "ok"
        except (json.JSONDecodeError, RecursionError):
            return None, "failed"
    return None, "failed"


class TemplateStep(Step):
    """Shared by steps that render one template and make one call per row."""

    template: PromptTemplate

    def extra_vars(self, row: Row) -> dict[str, Any]:
        return {}

    def render(self, variables: dict[str, Any]) -> list[Message]:
        return self.template.render(variables)

    def row_vars(self, row: Row) -> dict[str, Any]:
        return {**row.variables(self.ctx), **self.extra_vars(row)}

    def preflight(self, row: Row) -> None:
        self.render(self.row_vars(row))

    def fingerprint_inputs(self) -> dict[str, str]:
        return {f"template {self.template.name}": self.template.sha256}

    def describe(self) -> dict[str, Any]:
        return {"template": self.template.name, "template_path": self.template.path,
                "template_sha256": self.template.sha256}

    async def call(self, messages: list[Message], temperature: float | None,
                   max_tokens: int | None) -> Any:
        return await self.ctx.model().chat(messages, temperature=temperature, max_tokens=max_tokens)


class GenerateStep(TemplateStep):
    Config = GenerateConfig
    config: GenerateConfig

    def prepare(self) -> None:
        self.template = get_template(self.config.template, self.ctx.base_dir)

    def extra_vars(self, row: Row) -> dict[str, Any]:
        return dict(self.config.vars)

    async def run(self, row: Row) -> dict[str, Any]:
        messages = self.render(self.row_vars(row))
        res = await self.call(messages, self.config.temperature, self.config.max_tokens)
        if not res.ok:
            return {"value": None, "error": res.error, "call": res.trace()}
        value, status = parse_reply(res.text, self.config.parser)
        return {"value": value, "raw": res.text, "parse_status": status, "call": res.trace()}

"""One memory update: previous memory + turns -> new memory text, within the hard budget."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..models.runtime import ModelRuntime
from ..prompts import PromptTemplate
from .budget import Budget
from .prompts import after_marker, render_update


@dataclass
class UpdateFailure:
    """An update that produced nothing to commit; ``raw`` keeps the model's text, if any."""

    at: float
    error: str
    raw: str | None = None


class Summarizer:
    """Calls the update template through the runtime. Over budget, the model compresses again
    (``compress_tries`` times, bounded); if still over, the oldest sentences are cut and
    returned, so that the store records them: a memory is never silently unbounded."""

    def __init__(self, runtime: ModelRuntime, template: PromptTemplate, budget: Budget, compress_tries: int,
                 max_tokens: int | None = None) -> None:
        self.runtime, self.template, self.budget, self.compress_tries = runtime, template, budget, compress_tries
        self.max_tokens = max_tokens  # None: the model's own max_tokens
        self.marker = template.meta.get("reply_marker")

    async def __call__(self, previous: str | None, turns: list[Any]) -> tuple[str, list[str], str] | UpdateFailure:
        """(memory text, sentences cut, note) or the failure."""
        res = await self.runtime.chat(render_update(self.template, previous, turns, self.budget.max_sentences),
                                      max_tokens=self.max_tokens)
        if not res.ok or res.text is None:
            return UpdateFailure(time.time(), f"model call failed: {res.error}")
        text = after_marker(res.text, self.marker)
        if not text:
            return UpdateFailure(time.time(), "the model returned an empty memory", raw=res.text)
        notes = []
        tries = 0
        while self.budget.over(text) and tries < self.compress_tries:
            tries += 1
            res = await self.runtime.chat(render_update(self.template, text, [], self.budget.max_sentences,
                                                        compress=True), max_tokens=self.max_tokens)
            shorter = after_marker(res.text, self.marker) if res.ok and res.text else ""
            if shorter:
                text = shorter
        if tries:
            notes.append(f"compressed {tries}x")
        cut: list[str] = []
        if self.budget.over(text):
            result = self.budget.cut(text)
            text, cut = result.text, result.dropped
            notes.append(f"cut {len(cut)} oldest sentence(s) to fit the budget")
        return text, cut, "; ".join(notes)

"""A scripted model for tests and dry runs: answers from rules, without any network.

``options``: ``rules`` (list of ``{match: regex, reply: text}`` tried on the last user turn,
first match wins; the reply may use ``\\1`` groups), ``default`` (reply when nothing matches;
``"{echo}"`` echoes the last user turn), ``delay`` (seconds per call), ``fail_first`` (the first N
calls raise a retryable error), ``images`` (true: accept image content parts; rules see the text parts).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .spec import ModelConfig


class ScriptedModel(BaseChatModel):
    def __init__(self, rules: list[dict[str, str]] | None = None, default: str = "{echo}",
                 delay: float = 0.0, fail_first: int = 0, name: str = "scripted") -> None:
        self.rules = [(re.compile(r["match"], re.S), r["reply"]) for r in (rules or [])]
        self.default = default
        self.delay = delay
        self.fail_first = fail_first
        self.calls: list[list[Message]] = []
        self.identity = {"backend": "scripted", "model": name,
                         "rules": [(p.pattern, r) for p, r in self.rules], "default": default}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls.append(messages)
        if self.delay:
            await asyncio.sleep(self.delay)
        if len(self.calls) <= self.fail_first:
            raise BackendError("scripted failure", retryable=True, status=503)
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = last if isinstance(last, str) else " ".join(
            str(p.get("text", "")) for p in last if isinstance(p, dict) and p.get("type") == "text")
        for pattern, reply in self.rules:
            m = pattern.search(text)
            if m:
                return self._done(m.expand(reply), messages)
        return self._done(self.default.replace("{echo}", text), messages)

    @staticmethod
    def _done(text: str, messages: list[Message]) -> Completion:
        prompt = sum(len(str(m.content).split()) for m in messages)
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=len(text.split()),
                          finish_reason="stop")


def create(cfg: ModelConfig) -> ScriptedModel:
    opts: dict[str, Any] = dict(cfg.options)
    return ScriptedModel(rules=opts.get("rules"), default=opts.get("default", "{echo}"),
                         delay=float(opts.get("delay", 0.0)), fail_first=int(opts.get("fail_first", 0)),
                         name=cfg.model)


def accepts_images(cfg: ModelConfig) -> bool:
    """Only when the pipeline opts in with ``options: {images: true}``."""
    return bool(cfg.options.get("images", False))

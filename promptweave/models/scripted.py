"""A scripted model for tests and dry runs: answers from rules, without any network.

``options``: ``rules`` (list of ``{match: regex, reply: text}`` tried on the last user turn,
first match wins; the reply may use ``\\1`` groups), ``default`` (reply when nothing matches;
``"{echo}"`` echoes the last user turn), ``delay`` (seconds per call), ``fail_first`` (the first N
calls raise a retryable error), ``images`` (true: accept image content parts; rules see the text parts).
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

from ..errors import ConfigError
from .base import BackendError, BaseChatModel, Completion, GenParams, Message
from .spec import ModelConfig

_OPTIONS = ("rules", "default", "delay", "fail_first", "images")
MAX_DELAY = 3600.0
_GROUP_REF = re.compile(r"\\(\d+)|\\g<([^>]*)>")


def check_options(cfg: ModelConfig) -> None:
    """Check ``options`` before anything runs; one line naming the option (``model.options.X``)."""
    from ..registry import suggest

    opts = cfg.options
    for key in opts:
        if key not in _OPTIONS:
            raise ConfigError(f"scripted: unknown option '{key}'{suggest(str(key), list(_OPTIONS))}; "
                              f"known: {', '.join(_OPTIONS)}")
    rules = opts.get("rules")
    if rules is not None:
        if not isinstance(rules, list):
            raise ConfigError("scripted: 'rules' is a list of {match: REGEX, reply: TEXT}")
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict) or set(rule) != {"match", "reply"} \
                    or not all(isinstance(rule[k], str) for k in ("match", "reply")):
                raise ConfigError(f"scripted: rules[{i}] must be {{match: REGEX, reply: TEXT}} (both text)")
            try:
                pattern = re.compile(rule["match"], re.S)
            except re.error as exc:
                raise ConfigError(f"scripted: rules[{i}].match is not a valid regex: {exc}") from None
            for ref in _GROUP_REF.findall(rule["reply"]):
                name = ref[0] or ref[1]
                ok = int(name) <= pattern.groups if name.isdigit() else name in pattern.groupindex
                if not ok:
                    raise ConfigError(f"scripted: rules[{i}].reply uses group '{name}', which the match lacks")
    if not isinstance(opts.get("images", False), bool):
        raise ConfigError("scripted: 'images' is true or false")
    if "default" in opts and not isinstance(opts["default"], str):
        raise ConfigError("scripted: 'default' is the reply text (use \"{echo}\" to echo the prompt)")
    delay = opts.get("delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_DELAY:
        raise ConfigError(f"scripted: 'delay' is seconds between 0 and {MAX_DELAY:g}, got {delay!r}")
    fail_first = opts.get("fail_first", 0)
    if isinstance(fail_first, bool) or not isinstance(fail_first, int) or fail_first < 0:
        raise ConfigError(f"scripted: 'fail_first' is a count of calls (0 or more), got {fail_first!r}")


#: requests a scripted model keeps (``calls``); ``n_calls`` counts them all
KEPT_CALLS = 10_000


class ScriptedModel(BaseChatModel):
    def __init__(self, rules: list[dict[str, str]] | None = None, default: str = "{echo}",
                 delay: float = 0.0, fail_first: int = 0, name: str = "scripted") -> None:
        self.rules = [(re.compile(r["match"], re.S), r["reply"]) for r in (rules or [])]
        self.default = default
        self.delay = delay
        self.fail_first = fail_first
        self.calls: list[list[Message]] = []  # the first KEPT_CALLS requests, for tests to inspect
        self.n_calls = 0
        self.identity = {"backend": "scripted", "model": name,
                         "rules": [(p.pattern, r) for p, r in self.rules], "default": default}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.n_calls += 1
        if len(self.calls) < KEPT_CALLS:  # a million-row benchmark must not keep every prompt
            self.calls.append(messages)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.n_calls <= self.fail_first:
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
    check_options(cfg)
    opts: dict[str, Any] = dict(cfg.options)
    return ScriptedModel(rules=opts.get("rules"), default=opts.get("default", "{echo}"),
                         delay=float(opts.get("delay", 0.0)), fail_first=int(opts.get("fail_first", 0)),
                         name=cfg.model)


def accepts_images(cfg: ModelConfig) -> bool:
    """Only when the pipeline opts in with ``options: {images: true}``."""
    return bool(cfg.options.get("images", False))

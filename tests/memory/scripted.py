"""A deterministic memory model for tests: the scripted backend with rules that read the two
rendered memory prompts (its rules see the last user turn, i.e. the whole prompt)."""

from __future__ import annotations

from typing import Any

from promptweave.memory import MemoryConfig, MemoryManager, SQLStore
from promptweave.models import ModelConfig, create_backend
from promptweave.models.runtime import ModelRuntime

# update: learn "my name is X" and "I live in Y" from the dialogue, else keep the old memory
UPDATE_RULES = [
    {"match": r"(?s)\[Previous Memory\] none\n\[Dialogue Context\].*?my name is (\w+)",
     "reply": r"Updated Memory: The user's name is \1."},
    {"match": r"(?s)\[Previous Memory\] ([^\n]*)\n\[Dialogue Context\].*?I live in (\w+)",
     "reply": r"\1 The user lives in \2."},
    {"match": r"(?s)\[Previous Memory\] ([^\n]*)\n\[Dialogue Context\]", "reply": r"\1"},
]
RESPOND_RULES = [
    {"match": r"(?s)\[Previous Memory\] The user's name is (\w+)", "reply": r"Bot: Nice to talk again, \1!"},
    {"match": r"(?s)User: ([^\n]*)\n\[Response\]", "reply": r"You said: \1"},
]


def runtime(rules: list[dict[str, str]], default: str = "OK.", delay: float = 0.0, name: str = "mem",
            fail_first: int = 0) -> ModelRuntime:
    cfg = ModelConfig(backend="scripted", model=name, cache=False, max_retries=0,
                      options={"rules": rules, "default": default, "delay": delay, "fail_first": fail_first})
    return ModelRuntime(cfg, create_backend(cfg))


def manager(store: SQLStore, *, update_delay: float = 0.0, reply_delay: float = 0.0,
            update_rules: list[dict[str, str]] | None = None, **memory: Any) -> MemoryManager:
    runtimes = {"default": runtime(RESPOND_RULES, delay=reply_delay, name="chat"),
                "memory": runtime(update_rules or UPDATE_RULES, default="none", delay=update_delay)}
    return MemoryManager(store, runtimes, MemoryConfig(update_model="memory", **memory))

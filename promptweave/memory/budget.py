"""The hard memory budget: sentence and token counts, and the last-resort cut."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# a sentence ends at . ! ? (optionally closed by quotes/brackets) followed by space, or a newline
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences of a memory text, in order, stripped; bullets count as sentences."""
    parts = [p.strip().lstrip("-*• ").strip() for p in _SENTENCE_END.split(text.strip())]
    return [p for p in parts if p]


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token, at least one per word); the
    budget must hold for any backend, so it does not depend on one model's tokenizer."""
    return max(len(text) // 4, len(text.split()))


def turn_cost(text: str) -> int:
    """What one turn costs of a context budget: its approximate tokens + 2 (role and separator)."""
    return approx_tokens(text) + 2


def fit_newest(newest_first: Iterable[T], max_tokens: int, content: Callable[[T], str]) -> list[T]:
    """The turns, given newest first, that fit ``max_tokens`` (a turn costs its approximate
    tokens + 2; the newest always stays), in conversation order. Stops reading at the first
    turn that does not fit, so a store can hand it its rows lazily."""
    kept: list[T] = []
    used = 0
    for t in newest_first:
        cost = turn_cost(content(t))
        if kept and used + cost > max_tokens:
            break
        kept.append(t)
        used += cost
    return kept[::-1]


@dataclass
class Budget:
    """At most ``max_sentences`` sentences and, if set, ``max_tokens`` approximate tokens."""

    max_sentences: int
    max_tokens: int | None = None

    def over(self, text: str) -> bool:
        if len(sentences(text)) > self.max_sentences:
            return True
        return self.max_tokens is not None and approx_tokens(text) > self.max_tokens

    def cut(self, text: str) -> CutResult:
        """Drop the oldest (first) sentences until the text fits; what was dropped is returned
        so the store can record it: a cut is never silent."""
        kept = sentences(text)
        dropped: list[str] = []
        while kept and (len(kept) > self.max_sentences or
                        (self.max_tokens is not None and approx_tokens(" ".join(kept)) > self.max_tokens)):
            dropped.append(kept.pop(0))
        return CutResult(" ".join(kept), dropped)


@dataclass
class CutResult:
    text: str
    dropped: list[str] = field(default_factory=list)

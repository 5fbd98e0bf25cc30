"""Rendering the two memory prompts and reading their replies."""

from __future__ import annotations

import re
from typing import Any

from ..models.base import Message
from ..prompts import PromptTemplate
from .budget import fit_newest
from .store import Turn

NO_MEMORY = "none"  # the paper's memory of a new user

_SPEAKER = re.compile(r"^\s*(?:bot|assistant|system)\s*:\s*", re.I)


def turn_dicts(turns: list[Turn] | list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} if isinstance(t, Turn) else {"role": t[0], "content": t[1]}
            for t in turns]


def fit_context(turns: list[Any], max_tokens: int) -> list[Any]:
    """The newest turns whose text fits ``max_tokens`` (the last turn always stays)."""
    return fit_newest(reversed(turns), max_tokens, lambda t: t.content if isinstance(t, Turn) else t[1])


def render_update(tpl: PromptTemplate, memory: str | None, turns: list[Any], max_sentences: int,
                  compress: bool = False) -> list[Message]:
    return tpl.render({"memory": memory or NO_MEMORY, "turns": turn_dicts(turns), "max_sentences": max_sentences,
                       "compress": compress})


def render_respond(tpl: PromptTemplate, memory: str | None, turns: list[Any]) -> list[Message]:
    return tpl.render({"memory": memory or NO_MEMORY, "turns": turn_dicts(turns)})


def after_marker(text: str, marker: str | None) -> str:
    """The text after the last ``marker`` (``Updated Memory:``, ``[Response]`` ...), stripped of
    the marker's brackets and colon; the whole text when the marker is absent."""
    out = text
    if marker:
        idx = out.lower().rfind(marker.lower())
        if idx >= 0:
            out = out[idx + len(marker):]
            out = out.lstrip("]").lstrip().lstrip(":").lstrip()
    return out.strip()


def clean_reply(text: str, marker: str | None) -> str:
    """The bot's reply: after the marker, without a leading ``Bot:`` speaker label."""
    return _SPEAKER.sub("", after_marker(text, marker)).strip()

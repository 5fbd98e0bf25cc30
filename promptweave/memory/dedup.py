"""Which turns of a request are new: clients may send only the new user turn, or the whole
history (as most OpenAI clients do); the server stores each turn once."""

from __future__ import annotations

from .store import Turn


def new_turns(stored: list[Turn], sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``sent`` minus its longest prefix that equals the end of the stored transcript. A resent
    request whose user turn is already stored unanswered returns [] (answer it, store nothing)."""
    tail = [(t.role, t.content) for t in stored[-len(sent):]] if sent else []
    for k in range(min(len(sent), len(tail)), 0, -1):
        if tail[len(tail) - k:] == sent[:k]:
            if k == len(sent) and stored and stored[-1].role != "user":
                continue  # the whole request is old and already answered: it is a new turn again
            return sent[k:]
    return sent

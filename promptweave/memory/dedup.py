"""Which turns of a request are new: clients may send only the new user turn, or the whole
history (as most OpenAI clients do); the server stores each turn once."""

from __future__ import annotations

from .store import Turn


def new_turns(stored: list[Turn], sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``sent`` minus its longest prefix that equals the end of the stored transcript. A resent
    request whose user turn is already stored unanswered returns [] (answer it, store nothing).

    Linear in the turns compared (Knuth-Morris-Pratt over turns): trying every prefix length
    in turn was quadratic, so one request resending a long history (thousands of turns fit in a
    body) held the store's lock for seconds while every other conversation waited."""
    if not sent:
        return sent
    tail = [(t.role, t.content) for t in stored[-len(sent):]]
    border = _borders(sent)
    k = 0  # the longest prefix of ``sent`` that ends the tail read so far
    for turn in tail:
        while k and (k == len(sent) or turn != sent[k]):
            k = border[k - 1]
        if k < len(sent) and turn == sent[k]:
            k += 1
    if k == len(sent) and stored[-1].role != "user":
        k = border[k - 1]  # the whole request is old and already answered: its last turn is new again
    return sent[k:]


def _borders(seq: list[tuple[str, str]]) -> list[int]:
    """``out[i]``: the length of the longest proper prefix of ``seq[:i + 1]`` that is also its suffix."""
    out = [0] * len(seq)
    k = 0
    for i in range(1, len(seq)):
        while k and seq[i] != seq[k]:
            k = out[k - 1]
        if seq[i] == seq[k]:
            k += 1
        out[i] = k
    return out

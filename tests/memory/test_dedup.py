"""Which sent turns are new (promptweave/memory/dedup.py): the same answer as trying every
prefix length, in work linear in the turns."""

from __future__ import annotations

import random

from promptweave.memory.dedup import new_turns
from promptweave.memory.store import Turn


def _by_every_length(stored: list[Turn], sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The rule, spelled out: the longest prefix of ``sent`` that ends the transcript is old,
    unless it is all of ``sent`` and already answered."""
    tail = [(t.role, t.content) for t in stored]
    for k in range(min(len(sent), len(tail)), 0, -1):
        if tail[len(tail) - k:] == sent[:k]:
            if k == len(sent) and stored[-1].role != "user":
                continue
            return sent[k:]
    return sent


def _turns(pairs: list[tuple[str, str]]) -> list[Turn]:
    return [Turn(i + 1, role, content, 1, 0.0) for i, (role, content) in enumerate(pairs)]


def test_the_same_answer_as_trying_every_prefix_length() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        # two roles and two texts: many repeats, so borders and partial matches abound
        pick = lambda n: [(rng.choice(["user", "assistant"]), rng.choice("ab")) for _ in range(n)]  # noqa: E731
        stored = _turns(pick(rng.randint(0, 9)))
        sent = pick(rng.randint(0, 9))
        if stored and rng.random() < 0.5:  # a resend: the transcript's end, then maybe more
            cut = rng.randint(0, len(stored))
            sent = [(t.role, t.content) for t in stored[cut:]] + pick(rng.randint(0, 2))
        assert new_turns(stored, sent) == _by_every_length(stored, sent), (stored, sent)


class _Counted(str):
    compared = 0

    def __eq__(self, other: object) -> bool:
        _Counted.compared += 1
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


def test_a_long_resent_history_costs_comparisons_linear_in_its_length() -> None:
    n = 4000
    stored = _turns([("user", _Counted("a"))] * (n - 1) + [("assistant", _Counted("a"))])
    sent = [("user", _Counted("a"))] * n  # almost matches at every length: the worst case of the old loop
    _Counted.compared = 0
    assert new_turns(stored, sent) == sent
    assert _Counted.compared < 10 * n, _Counted.compared  # trying every length: about n * n / 2

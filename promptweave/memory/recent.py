"""The newest turns of recently active conversations, held in memory, so that a reply reads only
what is new since the last one instead of its whole dialogue context.

Why: every reply's prompt holds the current dialogue session's newest turns up to
``context_tokens``. Read from the store on every reply (each row turned into a
:class:`~.store.Turn` and measured), that cost grew with the session: in ``promptweave serve``
under load it was over a quarter of the server's CPU once sessions held a few hundred turns
(py-spy, benchmarks/serve.py).

The store stays the only truth. An entry is a faithful copy of a contiguous run of stored rows
(every turn with ``floor < seq <= last_seq``) and is used only when the conversation's row, read
in the same transaction as the reply, still has the entry's ``last_seq`` and incarnation token
(``gen``, random per creation): a conversation appended to by another process, or deleted and
created again, is read from the store as before. Entries are replaced, never changed, and written only after the transaction that
stored their turns committed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .budget import turn_cost

if TYPE_CHECKING:
    from .store import Turn

MAX_CONVERSATIONS = 1024  # entries kept (least recently used first out); a miss only costs a read
MAX_TOKENS = 4_000_000  # their total context cost (~16 MB of text); see RecentTurns


@dataclass(frozen=True)
class Recent:
    """Every stored turn of one conversation with ``floor < seq <= last_seq``."""

    gen: str  # the conversation row's incarnation token: tells a re-created conversation apart
    # (a creation time does not: two stores can create one in the same clock tick)
    last_seq: int
    budget: int  # the context budget the run was trimmed for
    turns: tuple[Turn, ...]
    costs: tuple[int, ...]
    floor: int
    floor_cost: int | None  # the cost of turn ``floor`` where known (the one a fit stopped at)

    def tail(self, after: int) -> list[Turn] | None:
        """The turns with ``seq > after``, or None when some of them are not held."""
        if after < self.floor:
            return None
        return list(self.turns[after - self.floor:])  # seqs are contiguous: turn floor + i + 1 is at i

    def context(self, start: int, budget: int) -> list[Turn] | None:
        """What :func:`~.budget.fit_newest` keeps of the turns after ``start`` within
        ``budget``, or None when that needs turns this run does not hold."""
        if budget > self.budget:
            return None
        kept: list[Turn] = []
        used = 0
        for t, cost in zip(reversed(self.turns), reversed(self.costs)):
            if t.seq <= start or (kept and used + cost > budget):
                kept.reverse()
                return kept
            kept.append(t)
            used += cost
        if self.floor <= start or (kept and self.floor_cost is not None and used + self.floor_cost > budget):
            kept.reverse()
            return kept
        return None

    def extended(self, added: Iterable[Turn]) -> Recent:
        """This run with ``added`` (the turns stored right after ``last_seq``), trimmed to what a
        context within ``budget`` can reach: a turn is dropped once the turns after it already
        exceed the budget, since a fit stops before it."""
        turns = [*self.turns, *added]
        costs = [*self.costs, *(turn_cost(t.content) for t in turns[len(self.costs):])]
        total = sum(costs)  # C-speed; a held run stays within about one budget of turns
        cut = 0
        while cut < len(costs) - 1 and total - costs[cut] > self.budget:
            total -= costs[cut]
            cut += 1
        floor, floor_cost = self.floor, self.floor_cost
        if cut:
            floor, floor_cost = turns[cut - 1].seq, costs[cut - 1]
        return Recent(self.gen, turns[-1].seq if turns else self.last_seq, self.budget, tuple(turns[cut:]),
                      tuple(costs[cut:]), floor, floor_cost)


def fit_read(newest_first: Iterable[Turn], budget: int) -> tuple[list[Turn], list[int], int | None]:
    """:func:`~.budget.fit_newest` over turns read newest first, keeping each kept turn's cost
    and the cost of the turn it stopped at (None when it ran out of turns)."""
    kept: list[Turn] = []
    costs: list[int] = []
    used = 0
    for t in newest_first:
        cost = turn_cost(t.content)
        if kept and used + cost > budget:
            kept.reverse()
            costs.reverse()
            return kept, costs, cost
        kept.append(t)
        costs.append(cost)
        used += cost
    kept.reverse()
    costs.reverse()
    return kept, costs, None


class RecentTurns:
    """The entries, by (namespace, conversation), least recently used dropped first, bounded in
    number and in total weight (the turns' context costs, about a token per 4 characters).

    Why the weight: a held run keeps its newest turn whatever its size, so 1,024 conversations
    each ending in a 1 MB message held a gigabyte; with the weight bound, held text stays near
    ``max_tokens`` tokens (~4 bytes each) and a huge turn is simply not held."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS, max_tokens: int = MAX_TOKENS) -> None:
        self.max_conversations, self.max_tokens = max_conversations, max_tokens
        self._entries: OrderedDict[tuple[str, str], tuple[Recent, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()  # the store may be used from several threads

    def get(self, ns: str, sid: str, gen: str, last_seq: int) -> Recent | None:
        """The entry, if it still matches the stored conversation row."""
        with self._lock:
            found = self._entries.get((ns, sid))
            if found is None:
                return None
            if found[0].gen != gen or found[0].last_seq != last_seq:
                self._pop((ns, sid))
                return None
            self._entries.move_to_end((ns, sid))
            return found[0]

    def put(self, ns: str, sid: str, entry: Recent) -> None:
        weight = sum(entry.costs)
        with self._lock:
            self._pop((ns, sid))
            if weight > self.max_tokens // 8:  # one conversation never takes more than an eighth
                return
            self._entries[(ns, sid)] = (entry, weight)
            self._weight += weight
            while len(self._entries) > self.max_conversations or self._weight > self.max_tokens:
                self._weight -= self._entries.popitem(last=False)[1][1]

    def appended(self, ns: str, sid: str, gen: str, added: list[Turn]) -> None:
        """After a commit that stored ``added`` without a reply's read: extend a matching entry."""
        if not added:
            return
        with self._lock:
            found = self._entries.get((ns, sid))
        if found is None:
            return
        if found[0].gen == gen and found[0].last_seq == added[0].seq - 1:
            self.put(ns, sid, found[0].extended(added))
        else:
            self.drop(ns, sid)

    def drop(self, ns: str, sid: str) -> None:
        with self._lock:
            self._pop((ns, sid))

    @property
    def weight(self) -> int:
        """The held turns' total context cost."""
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)

    def _pop(self, key: tuple[str, str]) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._weight -= found[1]

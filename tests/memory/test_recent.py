"""The newest turns held in memory (promptweave/memory/recent.py): a reply's context is always
what a store without them reads, whatever happened to the conversation in between."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from promptweave.memory import SQLStore, open_store
from promptweave.memory.dedup import new_turns
from promptweave.memory.prompts import fit_context
from promptweave.memory.recent import Recent, RecentTurns
from promptweave.memory.store import Turn

WORDS = ["a", "tiny", "word", "x" * 37, "medium sized words here", "y" * 300]


def _expected(oracle_url: str, ns: str, sid: str, budget: int, after_memory: bool) -> list[Turn]:
    """The context as a store that holds nothing reads it: every turn of the current dialogue
    session (after the memory, with ``after_memory``), fitted to the budget."""
    fresh = open_store(oracle_url)
    try:
        state = fresh.session(ns, sid)
        if state is None:
            return []
        start = state.session_start
        memory = fresh.latest_memory(ns, sid)
        if after_memory and memory is not None:
            start = max(start, memory.turn_to)
        return fit_context(fresh.turns(ns, sid, after=start), budget)
    finally:
        fresh.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_reply_context_equals_a_full_read_through_any_history(store: SQLStore, store_url: str, seed: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[bool] = []  # whether each reply's context came from the held turns
    context = Recent.context

    def counted(self: Recent, start: int, budget: int) -> list[Turn] | None:
        out = context(self, start, budget)
        served.append(out is not None)
        return out

    monkeypatch.setattr(Recent, "context", counted)
    rng = random.Random(seed)
    other = open_store(store_url)  # a second writer on the same database, as another process
    versions: dict[str, int] = {}
    try:
        for step in range(160):
            sid = f"s{rng.randint(0, 2)}"
            budget = rng.choice([12, 60, 60, 60, 400])
            after_memory = rng.random() < 0.3
            op = rng.random()
            if op < 0.06:
                store.end_session("ns", sid)
            elif op < 0.1:
                store.delete("ns", sid)
                versions.pop(sid, None)
            elif op < 0.14:
                other.append_turns("ns", sid, [("user", "from elsewhere"), ("assistant", "seen")])
            elif op < 0.18 and store.session("ns", sid) is not None:
                upto = store.session("ns", sid).last_seq
                v = versions.get(sid, 0)
                store.commit_memory("ns", sid, expected_version=v, text=f"memory {step}", turn_from=1, turn_to=upto,
                                    model={}, template_sha256="0" * 64)
                versions[sid] = v + 1
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
                sent = [("user", text)]
                if rng.random() < 0.2:  # a client that resends what the server already has
                    sent = [(t.role, t.content) for t in store.turns("ns", sid)][-3:] + sent
                view = store.begin_reply("ns", sid, sent, select_new=new_turns, context_tokens=budget,
                                         after_memory=after_memory)
                assert view.context == _expected(store_url, "ns", sid, budget, after_memory), step
                assert view.added and view.added[-1].content == text
                store.append_turns("ns", sid, [("assistant", f"reply {step}")])
            view = store.begin_reply("ns", sid, [], context_tokens=budget, after_memory=after_memory)
            assert view.context == _expected(store_url, "ns", sid, budget, after_memory), step
    finally:
        other.close()
    assert served.count(True) > 100 and served.count(False) > 5  # both paths were taken


def test_a_reply_in_a_long_session_reads_no_turn_rows(tmp_path: Path) -> None:
    """Once a conversation is held, a reply reads its session row and memory, not its turns."""
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    for i in range(200):
        store.begin_reply("ns", "long", [("user", f"message {i}")], select_new=new_turns, context_tokens=1500)
        store.append_turns("ns", "long", [("assistant", f"answer {i}")])
    statements: list[str] = []
    conn: sqlite3.Connection = store.conn  # type: ignore[attr-defined]
    conn.set_trace_callback(statements.append)
    view = store.begin_reply("ns", "long", [("user", "one more")], select_new=new_turns, context_tokens=1500)
    conn.set_trace_callback(None)
    assert [s for s in statements if "FROM pw_turns" in s] == []
    assert view.context == fit_context(store.turns("ns", "long"), 1500)
    assert view.context[-1].content == "one more" and len(view.context) == 375  # 4 tokens a turn, 1,500 budget
    store.close()


def test_a_run_that_does_not_hold_what_a_fit_needs_says_so() -> None:
    turns = tuple(Turn(s, "user", "w", 1, 0.0) for s in (5, 6, 7))  # cost 3 each
    run = Recent(gen="g1", last_seq=7, budget=9, turns=turns, costs=(3, 3, 3), floor=4, floor_cost=None)
    assert run.context(start=4, budget=9) == list(turns)  # the session starts at the floor: complete
    assert run.context(start=0, budget=9) is None  # turn 4 might fit too: not held
    assert run.context(start=0, budget=20) is None  # a larger budget than the run was kept for
    assert run.context(start=6, budget=9) == [turns[2]]
    stopped = Recent("g1", 7, 9, turns[1:], (3, 3), floor=5, floor_cost=5)
    assert stopped.context(start=0, budget=9) == list(turns[1:])  # turn 5 (cost 5) is known not to fit
    assert stopped.tail(after=4) is None and stopped.tail(after=6) == [turns[2]]
    grown = stopped.extended([Turn(8, "assistant", "w", 1, 0.0)])
    assert [t.seq for t in grown.turns] == [6, 7, 8] and grown.floor == 5
    # 8 + 9 + 10 fill the budget: 7 is where a fit stops (held), 6 is never reached (dropped)
    trimmed = grown.extended([Turn(9, "user", "w", 1, 0.0), Turn(10, "assistant", "w", 1, 0.0)])
    assert [t.seq for t in trimmed.turns] == [7, 8, 9, 10] and (trimmed.floor, trimmed.floor_cost) == (6, 3)
    assert [t.seq for t in trimmed.context(start=0, budget=9)] == [8, 9, 10]


def test_held_conversations_are_bounded_and_checked_against_the_row() -> None:
    held = RecentTurns(max_conversations=2)
    run = Recent("g1", 0, 10, (), (), 0, None)
    for sid in ("a", "b", "c"):
        held.put("ns", sid, run)
    assert held.get("ns", "a", "g1", 0) is None  # the least recently used went first
    assert held.get("ns", "c", "g1", 0) is run
    assert held.get("ns", "c", "g2", 0) is None  # a conversation created again: dropped
    assert held.get("ns", "b", "g1", 3) is None  # turns written elsewhere: dropped


def test_held_turns_are_bounded_in_weight_and_a_huge_turn_is_not_held(tmp_path: Path) -> None:
    held = RecentTurns(max_conversations=100, max_tokens=800)
    run = Recent("g1", 1, 1000, (Turn(1, "user", "w", 1, 0.0),), (60,), 0, None)
    for i in range(20):
        held.put("ns", f"s{i}", run)
    assert len(held) == 13 and held.weight == 13 * 60  # the oldest went out to keep the weight
    assert held.get("ns", "s19", "g1", 1) is run and held.get("ns", "s0", "g1", 1) is None
    held.put("ns", "s19", Recent("g1", 1, 1000, run.turns, (101,), 0, None))  # over an eighth: not held
    assert held.get("ns", "s19", "g1", 1) is None and held.weight == 12 * 60
    # through the store (a smaller bound, for speed): big messages in many conversations
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    store._recent = RecentTurns(max_tokens=100_000)
    try:
        for i in range(30):
            view = store.begin_reply("ns", f"big{i}", [("user", "x" * 20_000)], context_tokens=1500)
            assert view.context[-1].content == "x" * 20_000  # the reply still gets it
            assert store._recent.weight <= 100_000
        assert len(store._recent) == 19  # 5,002 tokens each
        view = store.begin_reply("ns", "huge", [("user", "x" * 60_000)], context_tokens=1500)
        assert len(view.context) == 1 and store._recent.get("ns", "huge", store.session("ns", "huge").gen, 1) is None
    finally:
        store.close()

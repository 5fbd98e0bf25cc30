"""The store contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from promptweave.memory import SQLStore, VersionConflict, open_store


def _commit(store: SQLStore, sid: str, expected: int, text: str, upto: int, ns: str = "a"):
    return store.commit_memory(ns, sid, expected_version=expected, text=text, turn_from=1, turn_to=upto,
                               model={"backend": "scripted", "model": "m"}, template_sha256="ab" * 32)


def test_turns_are_numbered_in_order_per_conversation(store: SQLStore) -> None:
    first = store.append_turns("a", "s1", [("user", "hi"), ("assistant", "hello")])
    second = store.append_turns("a", "s1", [("user", "bye")])
    other = store.append_turns("a", "s2", [("user", "x")])
    assert [t.seq for t in first + second] == [1, 2, 3]
    assert other[0].seq == 1
    assert [(t.role, t.content) for t in store.turns("a", "s1")] == [("user", "hi"), ("assistant", "hello"),
                                                                    ("user", "bye")]
    assert [t.seq for t in store.turns("a", "s1", after=1, upto=2)] == [2]


def test_namespaces_never_see_each_other(store: SQLStore) -> None:
    store.append_turns("a", "same", [("user", "secret of a")])
    store.append_turns("b", "same", [("user", "secret of b")])
    _commit(store, "same", 0, "A's memory.", 1, ns="a")
    assert [t.content for t in store.turns("b", "same")] == ["secret of b"]
    assert store.latest_memory("b", "same") is None
    assert store.delete("b", "same") is True
    assert [t.content for t in store.turns("a", "same")] == ["secret of a"]
    assert store.sessions("a") == ["same"] and store.sessions("b") == []


def test_memory_versions_are_kept_and_checked(store: SQLStore) -> None:
    store.append_turns("a", "s", [("user", "I am Ada."), ("assistant", "Hi Ada.")])
    v1 = _commit(store, "s", 0, "The user is Ada.", 2)
    assert v1.version == 1 and v1.model["model"] == "m" and len(v1.template_sha256) == 64
    with pytest.raises(VersionConflict):
        _commit(store, "s", 0, "A stale update.", 2)
    v2 = _commit(store, "s", 1, "The user is Ada. She codes.", 2)
    assert [v.text for v in store.versions("a", "s")] == ["The user is Ada.", "The user is Ada. She codes."]
    rb = store.rollback("a", "s", 1)
    assert rb.version == 3 and rb.text == v1.text and rb.turn_to == v2.turn_to and "rollback" in rb.note
    assert store.latest_memory("a", "s").version == 3
    with pytest.raises(KeyError):
        store.rollback("a", "s", 9)


def test_two_concurrent_updates_one_wins(store_url: str) -> None:
    """Two connections (as two server processes) race to commit on the same version."""
    stores = [open_store(store_url) for _ in range(2)]
    stores[0].append_turns("a", "s", [("user", "x")])
    results: list[object] = []
    barrier = threading.Barrier(2)

    def race(i: int) -> None:
        barrier.wait()
        try:
            results.append(_commit(stores[i], "s", 0, f"writer {i}", 1).version)
        except VersionConflict:
            results.append("conflict")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["1", "conflict"]
    assert len(stores[0].versions("a", "s")) == 1
    for s in stores:
        s.close()


def test_session_end_requests_an_update_that_survives_reopen(store_url: str) -> None:
    s = open_store(store_url)
    s.append_turns("a", "s", [("user", "I am Ada."), ("assistant", "Hi.")])
    assert s.end_session("a", "s") is True
    assert s.end_session("a", "s") is False  # nothing new since the end
    s.close()
    s = open_store(store_url)  # "after a restart"
    assert s.pending() == [("a", "s")]
    state = s.session("a", "s")
    assert (state.dialogue_no, state.session_start, state.pending_upto) == (2, 2, 2)
    _commit(s, "s", 0, "The user is Ada.", 2)
    assert s.pending() == []
    assert s.append_turns("a", "s", [("user", "again")])[0].dialogue_no == 2
    s.close()


def test_idle_sessions_and_delete(store: SQLStore) -> None:
    store.append_turns("a", "old", [("user", "x")], now=100.0)
    store.append_turns("a", "new", [("user", "y")], now=10_000.0)
    assert store.idle(before=5000.0) == [("a", "old")]
    _commit(store, "old", 0, "m.", 1)
    assert store.delete("a", "old") is True
    assert store.turns("a", "old") == [] and store.versions("a", "old") == [] and store.session("a", "old") is None
    assert store.delete("a", "old") is False


def test_the_reply_context_read_newest_first_is_what_fit_context_keeps(store: SQLStore) -> None:
    import random

    from promptweave.memory.prompts import fit_context

    rng = random.Random(5)
    words = ["a", "tiny", "word", "x" * 37, "medium sized words here", "y" * 400]
    turns = [("user" if i % 2 == 0 else "assistant", " ".join(rng.choice(words) for _ in range(rng.randint(1, 9))))
             for i in range(150)]
    store.append_turns("ns", "long", turns)
    everything = store.begin_reply("ns", "long", []).context
    assert len(everything) == 150
    for budget in (0, 1, 5, 60, 300, 1000, 5000, 10**6):
        bounded = store.begin_reply("ns", "long", [], context_tokens=budget).context
        assert bounded == fit_context(everything, budget), budget

"""A conversation deleted and started again is a new one, to every other store object (another
server process) and to every update that read the old one: nothing of the deleted one comes
back, whether the delete happened in the same clock tick or while an update ran."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from promptweave.memory import ConversationChanged, SQLStore, VersionConflict, open_store
from promptweave.memory.dedup import new_turns


def _commit(store: SQLStore, upto: int, conversation: str | None = None, expected: int = 0):
    return store.commit_memory("ns", "s", expected_version=expected, text="The user is Bob.", turn_from=1,
                               turn_to=upto, model={}, template_sha256="0" * 64, conversation=conversation)


def test_a_conversation_recreated_in_the_same_tick_elsewhere_is_not_served_from_held_turns(
        store: SQLStore, store_url: str) -> None:
    other = open_store(store_url)  # a second server process on the same database
    try:
        store.begin_reply("ns", "s", [("user", "the old secret")], context_tokens=100, now=1000.0)
        other.delete("ns", "s")
        other.append_turns("ns", "s", [("user", "a new start")], now=1000.0)  # same time, same last_seq
        view = store.begin_reply("ns", "s", [], context_tokens=100, now=1000.0)
        assert [t.content for t in view.context] == ["a new start"]
        view = store.begin_reply("ns", "s", [("user", "a new start"), ("user", "more")], select_new=new_turns,
                                 context_tokens=100, now=1000.0)
        assert [t.content for t in view.context] == ["a new start", "more"]
    finally:
        other.close()


def test_an_update_of_a_deleted_conversation_is_never_committed(store: SQLStore, store_url: str) -> None:
    other = open_store(store_url)
    try:
        store.append_turns("ns", "s", [("user", "I am Bob"), ("assistant", "Hi Bob")])
        read = store.session("ns", "s")  # what an update reads before its model call
        other.delete("ns", "s")  # the user is forgotten meanwhile, by another process
        with pytest.raises(ConversationChanged):  # gone: no orphan memory row
            _commit(store, 2, read.gen)
        assert store.versions("ns", "s") == []
        other.append_turns("ns", "s", [("user", "hello"), ("assistant", "hi"), ("user", "who am I?")])
        with pytest.raises(ConversationChanged):  # started again: not the conversation the update read
            _commit(store, 2, read.gen)
        other.delete("ns", "s")
        other.append_turns("ns", "s", [("user", "x")])
        with pytest.raises(VersionConflict):  # without the token, a range past the transcript is refused too
            _commit(store, 2)
        assert store.versions("ns", "s") == [] and other.latest_memory("ns", "s") is None
        view = store.begin_reply("ns", "s", [("user", "who am I?")], context_tokens=100, after_memory=True)
        assert view.memory is None and [t.content for t in view.context] == ["x", "who am I?"]
        assert _commit(store, 2, store.session("ns", "s").gen).version == 1  # the live incarnation commits
    finally:
        other.close()


def test_a_rollback_to_no_version_or_of_a_deleted_conversation_is_refused(store: SQLStore) -> None:
    store.append_turns("ns", "s", [("user", "I am Bob")])
    _commit(store, 1)
    for version in (0, -1, 2, 10**22):
        with pytest.raises(KeyError):
            store.rollback("ns", "s", version)
    store.delete("ns", "s")
    with pytest.raises(KeyError):
        store.rollback("ns", "s", 1)
    assert store.versions("ns", "s") == []


def test_a_store_made_before_incarnation_tokens_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE pw_sessions (
        ns TEXT NOT NULL, sid TEXT NOT NULL,
        dialogue_no INTEGER NOT NULL DEFAULT 1, session_start INTEGER NOT NULL DEFAULT 0,
        pending_upto INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
        last_activity DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (ns, sid))""")
    conn.execute("INSERT INTO pw_sessions (ns, sid, last_seq, last_activity, created) VALUES ('ns', 'a', 0, 1, 1), "
                 "('ns', 'b', 0, 1, 1)")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        gens = {store.session("ns", sid).gen for sid in ("a", "b")}
        assert len(gens) == 2 and "" not in gens
        assert store.append_turns("ns", "a", [("user", "hi")])[0].seq == 1
    finally:
        store.close()


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_text_a_store_cannot_keep_is_refused_on_both_stores_before_any_write(store: SQLStore, text: str) -> None:
    with pytest.raises(ValueError, match="NUL|surrogate"):
        store.append_turns("ns", "s", [("user", "fine"), ("user", text)])
    with pytest.raises(ValueError, match="NUL|surrogate"):
        store.begin_reply("ns", "s", [("user", text)], context_tokens=100)
    assert store.session("ns", "s") is None and store.turns("ns", "s") == []


async def test_a_reply_to_a_conversation_deleted_meanwhile_elsewhere_is_not_stored(store: SQLStore,
                                                                                  store_url: str) -> None:
    from promptweave.memory import ReplyDiscarded

    from .scripted import manager

    mm = manager(store, reply_delay=0.3)
    await mm.reply("ns", "s", [("user", "my name is Ada")])
    other = open_store(store_url)  # another server process forgets the user during the model call
    try:
        pending = asyncio.ensure_future(mm.reply("ns", "s", [("user", "what is my name?")]))
        await asyncio.sleep(0.1)
        assert other.delete("ns", "s")
        with pytest.raises(ReplyDiscarded):
            await pending
        assert store.session("ns", "s") is None and store.turns("ns", "s") == []  # not started again
    finally:
        other.close()


async def test_a_reply_waiting_behind_a_forget_never_runs_beside_a_later_one(store: SQLStore) -> None:
    from .scripted import manager

    mm = manager(store, reply_delay=0.2)
    first = asyncio.ensure_future(mm.reply("ns", "s", [("user", "one")]))
    await asyncio.sleep(0.05)
    forget = asyncio.ensure_future(mm.forget("ns", "s"))  # waits for the first reply
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(mm.reply("ns", "s", [("user", "two")]))  # waits behind the forget
    await forget
    later = asyncio.ensure_future(mm.reply("ns", "s", [("user", "three")]))
    await asyncio.gather(first, queued, later)
    turns = [(t.role, t.content) for t in store.turns("ns", "s")]
    assert turns == [("user", "two"), ("assistant", "You said: two"), ("user", "three"),
                     ("assistant", "You said: three")]


def test_a_rollback_racing_an_update_rolls_back_over_it(store: SQLStore, store_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An update that commits while a rollback runs (another process) is the version rolled
    back over, not a failed request (it was a VersionConflict: a 500 from serve)."""
    store.append_turns("ns", "s", [("user", "I am Bob"), ("assistant", "hi")])
    _commit(store, 1)
    other = open_store(store_url)
    try:
        real_tx = type(store)._tx

        def update_lands_first(self: SQLStore):  # type: ignore[no-untyped-def]
            if self is store and not landed:
                landed.append(other.commit_memory("ns", "s", expected_version=1, text="The user is Bob. He sings.",
                                                  turn_from=1, turn_to=2, model={}, template_sha256="0" * 64))
            return real_tx(self)

        landed: list = []
        monkeypatch.setattr(type(store), "_tx", update_lands_first)
        mv = store.rollback("ns", "s", 1)
        monkeypatch.undo()
        assert landed and mv.version == 3 and mv.text == "The user is Bob." and (mv.turn_from, mv.turn_to) == (1, 2)
        assert [v.text for v in other.versions("ns", "s")] == ["The user is Bob.", "The user is Bob. He sings.",
                                                               "The user is Bob."]
    finally:
        other.close()


def test_a_conversation_id_a_store_cannot_keep_is_refused_on_both_stores(store: SQLStore) -> None:
    with pytest.raises(ValueError, match="conversation id contains a NUL"):
        store.append_turns("ns", "a\x00b", [("user", "hi")])
    assert store.sessions("ns") == []

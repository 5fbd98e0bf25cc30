"""The memory engine: the paper's protocol, policies, budget, and updates off the reply path."""

from __future__ import annotations

import asyncio
import time

from promptweave.memory import SQLStore, sentences

from .scripted import manager, runtime


async def test_fact_of_session_one_reaches_the_prompt_of_session_three(store: SQLStore) -> None:
    mm = manager(store)
    first = await mm.reply("ns", "u", [("user", "Hello, my name is Ada.")])
    assert first.text == "You said: Hello, my name is Ada." and first.memory_version == 0
    assert "[Previous Memory] none" in first.messages[-1].content  # a new user's memory is "none"
    assert mm.end_session("ns", "u")
    await mm.drain()
    v1 = store.latest_memory("ns", "u")
    assert v1.text == "The user's name is Ada." and (v1.turn_from, v1.turn_to) == (1, 2)
    assert v1.template_sha256 == mm.update_tpl.sha256 and v1.model["model"] == "mem"
    await mm.reply("ns", "u", [("user", "I live in Lyon.")])
    mm.end_session("ns", "u")
    await mm.drain()
    assert store.latest_memory("ns", "u").text == "The user's name is Ada. The user lives in Lyon."
    third = await mm.reply("ns", "u", [("user", "Do you remember me?")])
    prompt = third.messages[-1].content
    assert "The user's name is Ada." in prompt and "Lyon" in prompt
    assert "I live in Lyon." not in prompt  # session 2's turns are not the current context
    assert third.text == "Nice to talk again, Ada!"  # the "Bot:" label is stripped
    assert [v.version for v in store.versions("ns", "u")] == [1, 2]


async def test_reply_never_waits_for_an_update(store: SQLStore) -> None:
    mm = manager(store, update_delay=1.0)
    await mm.reply("ns", "u", [("user", "my name is Ada")])
    mm.end_session("ns", "u")
    t0 = time.perf_counter()
    r = await mm.reply("ns", "u", [("user", "quick?")])
    assert time.perf_counter() - t0 < 0.5
    assert r.memory_version == 0  # the update has not committed yet: the reply used what was there
    await mm.drain()
    assert store.latest_memory("ns", "u").version == 1


async def test_every_n_turns_policy(store: SQLStore) -> None:
    mm = manager(store, policy="every_n_turns", every_n_turns=4)
    for i in range(4):
        await mm.reply("ns", "u", [("user", f"my name is Ada{i}" if i == 0 else f"turn {i}")])
        await mm.drain()
    versions = store.versions("ns", "u")
    assert [(v.turn_from, v.turn_to) for v in versions] == [(1, 4), (5, 8)]
    # requests that pile up while an update is due are folded into one: ranges stay contiguous
    for i in range(8):
        await mm.reply("ns", "u", [("user", f"more {i}")])
    await mm.drain()
    ranges = [(v.turn_from, v.turn_to) for v in store.versions("ns", "u")]
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:])) and ranges[-1][1] == 24


async def test_token_budget_policy_folds_the_oldest_turns(store: SQLStore) -> None:
    mm = manager(store, policy="token_budget", context_tokens=40, keep_turns=2)
    for i in range(6):
        await mm.reply("ns", "u", [("user", f"my name is Ada and this is a rather long message {i}")])
    await mm.drain()
    versions = store.versions("ns", "u")
    assert versions and versions[0].turn_from == 1
    last = store.session("ns", "u").last_seq
    assert versions[-1].turn_to <= last - 2  # the newest keep_turns stay live
    r = await mm.reply("ns", "u", [("user", "and now?")])
    assert "The user's name is Ada." in r.messages[-1].content


async def test_budget_compresses_then_cuts_and_records_the_cut(store: SQLStore) -> None:
    long = " ".join(f"Fact {i}." for i in range(30))
    rules = [{"match": r"longer than its limit", "reply": " ".join(f"Short {i}." for i in range(8))},
             {"match": r"Dialogue Context", "reply": long}]
    mm = manager(store, update_rules=rules, max_sentences=5, compress_tries=2)
    await mm.reply("ns", "u", [("user", "hi")])
    mm.end_session("ns", "u")
    await mm.drain()
    mv = store.latest_memory("ns", "u")
    assert len(sentences(mv.text)) == 5
    assert mv.text == "Short 3. Short 4. Short 5. Short 6. Short 7."
    assert mv.cut == ["Short 0.", "Short 1.", "Short 2."]
    assert "compressed 2x" in mv.note and "cut 3" in mv.note
    assert mm.runtimes["memory"].ledger.requests == 3  # one update + two bounded re-compressions


async def test_failed_update_commits_nothing_and_is_redone(store: SQLStore) -> None:
    mm = manager(store)
    failing_once = runtime([], default="Updated Memory: The user's name is Ada.", fail_first=1)  # no retries
    mm.runtimes["memory"] = mm.summarizer.runtime = failing_once
    mm.cfg.update_retry_after = 0.05
    await mm.reply("ns", "u", [("user", "my name is Ada")])
    mm.end_session("ns", "u")
    await mm.drain()
    assert store.latest_memory("ns", "u") is None and "failed" in mm.failures[("ns", "u")].error
    await asyncio.sleep(0.2)
    await mm.drain()
    assert store.latest_memory("ns", "u").text == "The user's name is Ada."


async def test_recover_redoes_an_update_requested_before_a_crash(store: SQLStore) -> None:
    store.append_turns("ns", "u", [("user", "my name is Ada"), ("assistant", "hi")])
    store.end_session("ns", "u")  # the process died before the update committed
    mm = manager(store)
    assert mm.recover() == 1
    await mm.drain()
    assert store.latest_memory("ns", "u").text == "The user's name is Ada."
    assert mm.recover() == 0


async def test_idle_timeout_ends_the_session(store: SQLStore) -> None:
    mm = manager(store, idle_timeout=0.05)
    await mm.reply("ns", "u", [("user", "my name is Ada")])
    await asyncio.sleep(0.1)
    assert mm.sweep_idle() == 1
    await mm.drain()
    assert store.latest_memory("ns", "u").version == 1
    assert store.session("ns", "u").dialogue_no == 2


async def test_a_store_outage_after_the_reply_is_stored_still_answers(store: SQLStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The policy check after a stored reply is best effort: failing there made the client retry
    a request whose exchange was already stored, and the retry stored it twice."""
    from promptweave.memory import StoreUnavailable

    mm = manager(store, policy="every_n_turns", every_n_turns=2)

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("SQLite: database is locked")

    monkeypatch.setattr(type(store), "session", down)
    r = await mm.reply("ns", "u", [("user", "hi")])
    monkeypatch.undo()
    assert r.text == "You said: hi"
    assert [t.content for t in store.turns("ns", "u")] == ["hi", "You said: hi"]

"""The actor's in-memory cache (no Ray needed): seeds shared by batches that run at once."""

from __future__ import annotations

from promptweave.pipelines.executors.worker import MemoryCache, from_wire

A = ("answer a", 3, 2, "stop")
B = ("answer b", 4, 1, "stop")


def test_a_seed_stays_while_any_batch_that_brought_it_runs() -> None:
    cache = MemoryCache()
    first, second = {"ka": A, "kb": B}, {"ka": A}
    cache.add_seeds(first)
    cache.add_seeds(second)  # a second batch of the window needs the same cached completion
    cache.drop_seeds(first)  # the first batch returns
    hit = cache.get("ka")
    assert hit is not None and hit.text == "answer a"  # the second batch still finds it: no model call
    assert cache.get("kb") is None  # brought by the first batch only
    cache.drop_seeds(second)
    assert cache.get("ka") is None and cache.seeds == {}


def test_new_completions_are_handed_over_once_and_kept_as_recent() -> None:
    cache = MemoryCache(keep=1)
    cache.put("k1", from_wire(A))
    cache.put("k2", from_wire(B))
    assert cache.take_new() == {"k1": A, "k2": B} and cache.take_new() == {}
    assert cache.get("k1") is None and cache.get("k2") is not None  # only the last ``keep`` stay

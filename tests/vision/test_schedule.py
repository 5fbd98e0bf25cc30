"""The critical-path gate: descriptions first, deepest first; then extractions, shallowest first."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

from promptweave.vision.dc2 import DC2Params, build_memory
from promptweave.vision.images import LoadedImage
from promptweave.vision.schedule import PriorityGate, describe_rank, extract_rank

from .helpers import noise, run


def test_waiters_go_in_rank_order_first_come_among_equals() -> None:
    async def go() -> list[str]:
        gate, order, go_on = PriorityGate(1), [], asyncio.Event()

        async def call(name: str, rank: tuple[int, int]) -> None:
            async with gate.slot(rank):
                order.append(name)
                await go_on.wait()

        holder = asyncio.ensure_future(call("first", extract_rank(0)))
        await asyncio.sleep(0)  # it holds the only slot
        waiting = []
        for name, rank in [("extract d2", extract_rank(2)), ("extract d1 a", extract_rank(1)),
                           ("describe d1", describe_rank(1)), ("extract d1 b", extract_rank(1)),
                           ("describe d3", describe_rank(3))]:
            waiting.append(asyncio.ensure_future(call(name, rank)))
            await asyncio.sleep(0)  # queued in this order
        go_on.set()
        await asyncio.gather(holder, *waiting)
        return order

    assert run(go()) == ["first", "describe d3", "describe d1", "extract d1 a", "extract d1 b", "extract d2"]


def test_cancelled_waiters_do_not_lose_a_slot() -> None:
    async def go() -> int:
        gate = PriorityGate(2)
        release = asyncio.Event()

        async def hold() -> None:
            async with gate.slot(describe_rank(0)):
                await release.wait()

        holders = [asyncio.ensure_future(hold()) for _ in range(2)]
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(hold())
        await asyncio.sleep(0)
        waiter.cancel()  # cancelled while waiting
        release.set()
        await asyncio.gather(*holders)
        await asyncio.gather(waiter, return_exceptions=True)
        # granted and cancelled at once: the slot is passed on, not kept
        async with gate.slot(extract_rank(0)):
            pass
        return gate.free

    assert run(go()) == 2


def test_an_extraction_goes_out_when_its_description_is_in_not_after_the_parents() -> None:
    rules = [{"match": "Sentence:", "reply": '{"object_list": ["cat"]}'},
             {"match": "patch captions", "reply": "A cat and a dog."},
             {"match": "describe", "reply": "A cat sits."}]
    from promptweave.models.runtime import ModelRuntime
    from promptweave.models.scripted import ScriptedModel
    from promptweave.models.spec import ModelConfig

    cfg = ModelConfig(backend="scripted", options={"images": True}, cache=False, max_concurrency=1)
    rt = ModelRuntime(cfg, ScriptedModel(rules=rules, delay=0.01))  # calls take time, so others queue
    prompts: list[str] = []
    chat = rt.chat

    async def recording(messages, **kw):  # type: ignore[no-untyped-def]
        content = messages[-1].content
        text = content if isinstance(content, str) else content[-1]["text"]
        prompts.append("extract" if "Sentence:" in text else "refine" if "patch captions" in text else "describe")
        return await chat(messages, **kw)

    rt.chat = recording  # type: ignore[method-assign]
    img = LoadedImage(noise(400, 400), "t", "5" * 64)
    mem = run(build_memory(img, rt, DC2Params(min_side=100, max_depth=1, merge_threshold=0)))
    assert not mem.errors
    # one slot: the four leaves' descriptions; their (one, equal) extraction, waiting since the
    # first leaf's description came in, takes the slot that frees before the root's description
    # is asked; then the root's description and extraction. (Conclusions started from the
    # parent's conclusion asked the leaves' extraction only after the root's: one more round of
    # calls per level on the critical path.)
    assert prompts == ["describe"] * 4 + ["extract", "refine", "extract"]


def test_pixel_pool_runs_the_most_urgent_job_first_and_hands_back_errors() -> None:
    import threading
    import time

    from promptweave.vision.schedule import LATER, PriorityPool

    async def go() -> tuple[list[str], str]:
        pool, order, hold, busy = PriorityPool(workers=1, idle_s=0.05), [], threading.Event(), threading.Event()
        first = pool.submit(LATER, lambda: (busy.set(), hold.wait(5)))  # the one worker is busy with this
        # before the others are submitted: a worker that started late took the most urgent of
        # those already waiting (4 in 300 runs), which is the pool's rule but not this test's case
        assert busy.wait(5)
        jobs = [pool.submit(rank, lambda name=name: order.append(name))
                for name, rank in [("later", LATER), ("extract d1", extract_rank(1)), ("leaf d2", describe_rank(2)),
                                   ("leaf d5", describe_rank(5)), ("inner d2", describe_rank(2))]]

        def boom() -> None:
            raise ValueError("bad patch")

        failing = pool.submit(describe_rank(0), boom)
        hold.set()
        await asyncio.gather(first, *jobs)
        try:
            await failing
            error = ""
        except ValueError as exc:
            error = str(exc)
        deadline = time.monotonic() + 5
        while pool._running and time.monotonic() < deadline:  # idle workers leave
            await asyncio.sleep(0.02)
        assert pool._running == 0
        return order, error

    order, error = run(go())
    assert order == ["leaf d5", "leaf d2", "inner d2", "extract d1", "later"]
    assert error == "bad patch"

"""Which of DC²'s waiting model calls goes out next: the most urgent one.

A visual memory is ready when the root's description and object extraction are in, and the
root's description waits for one description per level below it: the descriptions form the
critical path, the extractions have slack (a node's extraction is needed only when its parent
concludes, after the parent's own description and extraction). With the runtime's plain
first-come order, the extractions of the shallow leaves, issued early, held the slots while deep
leaves' descriptions waited; the gate sends descriptions first, deepest first (the longest chain
of calls still ahead), then extractions, shallowest first (the root's ends the build).
It is work-conserving: a free slot is never left idle while a call waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable


def describe_rank(depth: int) -> tuple[int, int]:
    """A node's description: deeper first (its chain to the root is longer)."""
    return (0, -depth)


def extract_rank(depth: int) -> tuple[int, int]:
    """A node's object extraction: after every waiting description, shallower first."""
    return (1, depth)


#: pixel work needed only once the calls are done (the downsampled image for the answer)
LATER = (2, 0)


class PriorityGate:
    """At most ``slots`` holders at once; waiters are let in by rank (smallest first), first come
    first served among equals."""

    def __init__(self, slots: int) -> None:
        self.free = max(1, slots)
        self._waiting: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, rank: tuple[int, int]) -> AsyncIterator[None]:
        await self._acquire(rank)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, rank: tuple[int, int]) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled: pass the slot on
                self._release()
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():  # a cancelled waiter is skipped
                fut.set_result(None)
                return
        self.free += 1


class PriorityPool:
    """Worker threads for pixel work (cutting and encoding patches) that take the most urgent
    job first. A plain executor runs jobs in the order they came: the ~90 inner patches of an 8K
    tree, all asked for when the planning ended, went ahead of the deepest leaves' patches,
    which are the first ones the calls need. Idle workers leave after a moment."""

    def __init__(self, workers: int = 2, idle_s: float = 0.5) -> None:
        self.workers, self.idle_s = workers, idle_s
        self._jobs: list[tuple[tuple[int, int], int, Callable[[], Any], asyncio.Future[Any]]] = []
        self._cv = threading.Condition()
        self._order = itertools.count()
        self._running = 0

    def submit(self, rank: tuple[int, int], fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """``fn()`` in a worker thread, after every waiting job of a smaller rank."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._cv:
            heapq.heappush(self._jobs, (rank, next(self._order), fn, fut))
            if self._running < self.workers:
                self._running += 1
                threading.Thread(target=self._work, daemon=True,
                                 name="dc2-pixels").start()
            else:
                self._cv.notify()
        return fut

    def _work(self) -> None:
        while True:
            with self._cv:
                if not self._jobs:
                    self._cv.wait(self.idle_s)
                if not self._jobs:
                    self._running -= 1
                    return
                _, _, fn, fut = heapq.heappop(self._jobs)
            if fut.cancelled():  # nobody waits for it any more
                continue
            try:
                result, error = fn(), None
            except Exception as exc:  # noqa: BLE001 - handed to the waiting coroutine
                result, error = None, exc
            try:
                fut.get_loop().call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # the loop is closed: nobody waits
                pass


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)

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
from contextlib import asynccontextmanager
from typing import AsyncIterator


def describe_rank(depth: int) -> tuple[int, int]:
    """A node's description: deeper first (its chain to the root is longer)."""
    return (0, -depth)


def extract_rank(depth: int) -> tuple[int, int]:
    """A node's object extraction: after every waiting description, shallower first."""
    return (1, depth)


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

"""What a Ray actor runs: the steps of a pipeline on chunks of rows, with its own model runtimes.

The actor has no cache file (SQLite files are never shared across nodes): an in-memory cache
serves the completions the driver found in its cache for the rows it holds (``seeds``) and the ones this
actor made recently, and hands the new ones back to the driver, which writes them to its file.
This module imports no Ray: the pool wraps :class:`RowWorker` with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ...config import LoadedConfig
from ...models.base import Completion
from ...models.runtime import EndpointDown, Ledger
from ..steps import Row

#: a completion as it travels between driver and actors: (text, prompt_tokens, completion_tokens, finish_reason)
Wire = tuple[str, int, int, "str | None"]


def to_wire(c: Completion) -> Wire:
    return (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason)


def from_wire(w: Wire) -> Completion:
    return Completion(text=w[0], prompt_tokens=w[1], completion_tokens=w[2], finish_reason=w[3])


class MemoryCache:
    """The ``get``/``put`` a :class:`ModelRuntime` needs, in memory. ``recent`` keeps the last
    ``keep`` completions so that rows of later batches asking the same thing share them. Seeds are
    counted by the batches that brought them: batches run at once may share one."""

    def __init__(self, keep: int = 10_000) -> None:
        self.seeds: dict[str, Completion] = {}
        self._holders: dict[str, int] = {}  # seed key -> batches running that brought it
        self.recent: OrderedDict[str, Completion] = OrderedDict()
        self.new: dict[str, Completion] = {}
        self.keep = keep

    def get(self, key: str) -> Completion | None:
        hit = self.seeds.get(key) or self.recent.get(key)
        if hit is not None and key in self.recent:
            self.recent.move_to_end(key)
        return hit

    def put(self, key: str, c: Completion) -> None:
        self.new[key] = c
        self.recent[key] = c
        if len(self.recent) > self.keep:
            self.recent.popitem(last=False)

    def add_seeds(self, seeds: dict[str, Wire]) -> None:
        for key, wire in seeds.items():
            self.seeds[key] = from_wire(wire)
            self._holders[key] = self._holders.get(key, 0) + 1

    def drop_seeds(self, seeds: dict[str, Wire]) -> None:
        for key in seeds:
            left = self._holders.pop(key, 1) - 1
            if left > 0:
                self._holders[key] = left
            else:
                self.seeds.pop(key, None)

    def take_new(self) -> dict[str, Wire]:
        new, self.new = self.new, {}
        return {k: to_wire(c) for k, c in new.items()}

    def close(self) -> None:
        self.seeds.clear()
        self._holders.clear()
        self.recent.clear()


class RowWorker:
    """One actor: an engine without a run directory, used only to build and run the steps."""

    def __init__(self, loaded: LoadedConfig, concurrency: int) -> None:
        from ..engine import Engine  # the engine imports the executors package

        logging.basicConfig(level=logging.WARNING)
        self.engine = Engine(loaded, Path("."), progress=False)
        self.engine.build_steps()
        self.cache = MemoryCache()
        self.engine.build_models(cache=self.cache)
        self.concurrency = concurrency
        self._sem: asyncio.Semaphore | None = None

    def info(self) -> dict[str, Any]:
        """Where the actor runs and the identity of its models (the driver's cache keys use them)."""
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "models": {name: rt.identity for name, rt in self.engine.runtimes.items()}}

    async def run_batch(self, rows: list[tuple[int, str, dict[str, Any]]], seeds: dict[str, Wire]) -> dict[str, Any]:
        """Run the rows (``pipeline.concurrency`` at once over all batches this actor holds); return
        their records, the completions made since the last batch returned, and the usage since
        then. A tripped circuit breaker returns the records finished so far with ``down`` set."""
        if self._sem is None:  # made on the actor's event loop
            self._sem = asyncio.Semaphore(self.concurrency)
        sem = self._sem
        self.cache.add_seeds(seeds)
        records: list[dict[str, Any]] = []
        down: str | None = None

        async def one(index: int, key: str, fields: dict[str, Any]) -> None:
            async with sem:
                records.append(await self.engine._run_row(Row(index=index, key=key, fields=fields)))

        tasks = [asyncio.ensure_future(one(*r)) for r in rows]
        try:
            await asyncio.gather(*tasks)
        except EndpointDown as exc:
            down = str(exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.cache.drop_seeds(seeds)
        usage: dict[str, dict[str, Any]] = {}
        for name, rt in self.engine.runtimes.items():
            used, rt.ledger = rt.ledger, Ledger()  # the usage since the last report
            usage[name] = used.to_dict()
        return {"records": records, "completions": self.cache.take_new(), "usage": usage, "down": down}

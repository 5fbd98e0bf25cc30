"""The default executor: rows run as asyncio tasks in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import Emit

if TYPE_CHECKING:
    from ..engine import Engine
    from ..steps import Row


class LocalExecutor:
    """``concurrency`` workers share one iterator over the rows: tasks and memory in flight stay
    bounded by the concurrency, not by the number of rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._closed = False

    async def start(self) -> None:
        self.engine.build_models()

    async def run(self, rows: Iterable[Row], emit: Emit) -> None:
        queue = iter(rows)

        async def worker() -> None:
            for row in queue:
                emit(await self.engine._run_row(row))  # a failed write (disk full) stops the run, resumably

        tasks = [asyncio.ensure_future(worker()) for _ in range(self.engine.pipeline.concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # a run stopped early (EndpointDown) leaves no row running
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.engine._close_models()

    def manifest(self) -> dict[str, Any]:
        return {"kind": "local"}

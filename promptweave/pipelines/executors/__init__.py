"""Executors run the rows a run has left to do and hand each finished record to the engine.

The engine (driver) keeps everything else: loading and validating, the run store and resume,
the cache file, metrics and the report. An executor has four calls:

- ``await start()``: build what runs rows (the model runtimes; for Ray, the actor pool) and
  fill ``engine.runtimes`` so that the manifest names the models;
- ``await run(rows, emit)``: run the rows (an iterator that reads the data as it is asked, so
  take rows only as fast as they run), calling ``emit(record)`` once per finished row;
- ``await close()``: let the runtimes / actors go (idempotent; also after an interrupt);
- ``manifest()``: what the manifest records about it (for Ray, usage per actor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .spec import ExecutorConfig

if TYPE_CHECKING:
    from ..engine import Engine
    from ..steps import Row

Emit = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    async def start(self) -> None: ...

    async def run(self, rows: Iterable[Row], emit: Emit) -> None: ...

    async def close(self) -> None: ...

    def manifest(self) -> dict[str, Any]: ...


def create_executor(engine: Engine) -> Executor:
    """The executor the pipeline's ``executor:`` block asks for; a missing Ray is a config error."""
    cfg = engine.pipeline.executor
    if cfg.kind == "ray":
        from .ray_pool import RayExecutor, require_ray

        require_ray(engine.loaded)
        return RayExecutor(engine, cfg)
    from .local import LocalExecutor

    return LocalExecutor(engine)


__all__ = ["Emit", "Executor", "ExecutorConfig", "create_executor"]

"""What the server and the terminal chat share: runtimes, store and memory manager, built from a
serve file, plus the background work (crash recovery, idle-session sweeps)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from ..errors import PromptweaveError
from ..memory import MemoryManager, SQLStore, open_store
from ..models import create_backend
from ..models.cache import CompletionCache
from ..models.runtime import ModelRuntime
from .config import LoadedServeConfig

log = logging.getLogger("promptweave.serve")


class ChatService:
    def __init__(self, loaded: LoadedServeConfig) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.cache: CompletionCache | None = None
        self.store: SQLStore | None = None
        self.manager: MemoryManager | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def _store_url(self) -> str:
        url = self.cfg.store
        if url.startswith(("postgresql://", "postgres://")):
            return url
        path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://")).expanduser()
        if not path.is_absolute() and str(path) != ":memory:":
            path = self.loaded.base_dir / path  # relative to the serve file, like every other path
        return f"sqlite:///{path}"

    async def start(self) -> MemoryManager:
        """Open everything; schedule the updates a crash left undone; start the idle sweeper."""
        if self.cfg.cache != "off":
            try:
                self.cache = CompletionCache(self.loaded.base_dir / self.cfg.cache)
            except (OSError, sqlite3.Error) as exc:
                raise self.loaded.error_at(("cache",), f"cannot open the cache: {exc}; fix the path or set cache: off") from None
        # no circuit breaker: it stops a pipeline run for good after a few refused connections,
        # which would leave a long-running server answering 502 after the backend's first restart;
        # each request fails on its own (after its retries) and the next one tries again
        # (an openai backend's default transport, auto, is already the lean one wherever usable)
        configs = {name: mc.model_copy(update={"circuit_breaker": 0})
                   for name, mc in {"default": self.cfg.model, **self.cfg.models}.items()}
        runtimes = {name: ModelRuntime(mc, create_backend(mc), self.cache) for name, mc in configs.items()}
        try:
            self.store = open_store(self._store_url())
        except (OSError, sqlite3.Error) as exc:
            raise self.loaded.error_at(("store",), f"cannot open the store: {exc}") from None
        except PromptweaveError as exc:
            raise self.loaded.error_at(("store",), str(exc)) from None
        self.manager = MemoryManager(self.store, runtimes, self.cfg.memory, self.loaded.base_dir)
        redone = self.manager.recover()
        if redone:
            log.warning("redoing %d memory update(s) left unfinished by the last run", redone)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return self.manager

    async def _sweep(self) -> None:
        assert self.manager is not None
        interval = self.cfg.server.idle_sweep_seconds
        if self.cfg.memory.idle_timeout is not None:
            interval = min(interval, max(self.cfg.memory.idle_timeout / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            try:
                self.manager.sweep_idle()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next tick
                log.exception("idle sweep failed")

    async def close(self, drain_seconds: float = 10.0) -> None:
        """Stop the sweeper, give running updates a moment (unfinished ones are redone at the
        next start), close runtimes, cache and store."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.manager is not None:
            try:
                await asyncio.wait_for(self.manager.drain(), drain_seconds)
            except asyncio.TimeoutError:
                log.warning("memory updates still running at shutdown; they are redone at the next start")
            for rt in self.manager.runtimes.values():
                await rt.aclose()
        if self.cache is not None:
            self.cache.close()
        if self.store is not None:
            self.store.close()

"""The Ray executor: the driver probes its cache, then sends the rows left in chunks to a pool of
actors (:class:`.worker.RowWorker`), each with its own model runtimes.

The driver stays the single writer of ``results.jsonl`` and of the cache file: actors return
finished records, their new completions and their usage. At most ``max_in_flight`` chunks are
out at once (default one per actor), and the driver probes one chunk ahead, no more: back-pressure. An actor
that dies is restarted by Ray (``max_restarts``) and the chunk it held is sent again; records of
keys already written in this run are dropped, so no row is written twice. Ctrl-C (or any error)
kills the actors; the rows written so far stay, and the same command resumes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...config import LoadedConfig
from ...errors import PromptweaveError
from ...models.runtime import EndpointDown, Ledger
from . import Emit
from .probe import CacheProbe
from .spec import ExecutorConfig
from .worker import RowWorker, Wire, from_wire

if TYPE_CHECKING:
    from ..engine import Engine
    from ..steps import Row

log = logging.getLogger("promptweave.executor.ray")
_GIVE_UP = 8  # failed sends in a row (about a minute of waits) after which an actor leaves the pool
INSTALL = "pip install 'promptweave[ray]'"

Chunk = tuple[list[tuple[int, str, dict[str, Any]]], dict[str, Wire]]


def require_ray(loaded: LoadedConfig) -> None:
    """``executor: ray`` without Ray installed is a one-line config error naming the fix."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise loaded.error_at(("executor",), f"kind ray needs Ray, which is not installed: {INSTALL} (or use executor: local)") from None


def _reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds on a HOST:PORT nobody listens on (Ray itself retries for a minute or more)."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ValueError("expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from None


TOKEN_HELP = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, a file) to the cluster's token, "
              "which 'ray start --head' keeps in ~/.ray/auth_token on the head")


def _check_token(address: str | None) -> None:
    """One connection attempt to the cluster's GCS at an explicit HOST:PORT, so that a missing or
    wrong token (Ray 2.5x token authentication) fails at once in one line; ``ray.init`` retries it
    for about 20 s and logs every try to stderr. Anything else is left to ``ray.init``."""
    if not address or address == "auto" or address.startswith("ray://"):
        return
    try:
        from ray._raylet import GcsClient  # not public API: without it, ray.init says what it says
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    with _stderr_to_devnull():  # Ray's C++ core logs the refused try to file descriptor 2
        try:
            GcsClient(address=address)
        except AuthenticationError:
            raise ConnectionError(f"the cluster wants an authentication token and this process has none or "
                                  f"another: {TOKEN_HELP}, or fix executor.address") from None
        except Exception:  # noqa: BLE001 - the real connection below reports it
            return


@contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass
class ActorStats:
    """What the manifest records per actor."""

    host: str = ""
    pid: int = 0
    chunks: int = 0
    rows: int = 0
    failed_sends: int = 0  # chunks that came back failed because it died or was restarting (each sent again)
    usage: dict[str, Ledger] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "chunks": self.chunks, "rows": self.rows,
                "failed_sends": self.failed_sends, "usage": {k: v.to_dict() for k, v in self.usage.items()}}


class RayExecutor:
    def __init__(self, engine: Engine, cfg: ExecutorConfig) -> None:
        self.engine, self.cfg = engine, cfg
        self.actors: list[Any] = []
        self.stats: list[ActorStats] = []
        self.dead: set[int] = set()
        self._failures: dict[int, int] = {}  # failed sends in a row, per actor
        self._paused: dict[int, float] = {}  # actor -> monotonic time it may be sent to again
        self.probe: CacheProbe | None = None
        self.from_cache = 0  # rows the driver finished from its cache
        self.dropped = 0  # records of rows already written (a chunk sent again)
        self._owns_ray = False
        self._closed = False

    async def start(self) -> None:
        import ray

        if not ray.is_initialized():
            where = self.cfg.address or "a new local Ray instance"
            try:
                _reachable(self.cfg.address)
                _check_token(self.cfg.address)
                ray.init(address=self.cfg.address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
                why = f"{_last_line(exc)}; start the cluster with 'ray start --head' or fix executor.address"
                if "InvalidAuthToken" in str(exc) or isinstance(exc, getattr(ray.exceptions, "AuthenticationError", ())):
                    why = f"the cluster refused this process's authentication token: {TOKEN_HELP}"
                raise self.engine.loaded.error_at(
                    ("executor", "address"), f"cannot start or reach Ray at {where}: {why}") from None
            self._owns_ray = True
        self.engine.cache = self.engine._open_cache()
        cfg = self.cfg
        remote = ray.remote(RowWorker).options(  # type: ignore[attr-defined]
            num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, resources=cfg.resources or None,
            max_restarts=cfg.max_restarts, max_task_retries=0)
        self.actors = [remote.remote(self.engine.loaded, self.engine.pipeline.concurrency) for _ in range(cfg.actors)]
        self.stats = [ActorStats() for _ in self.actors]
        try:
            infos = await asyncio.wait_for(asyncio.gather(*[a.info.remote() for a in self.actors]), cfg.start_timeout)
        except asyncio.TimeoutError:
            raise PromptweaveError(
                f"executor: Ray did not place {cfg.actors} actors (num_cpus={cfg.num_cpus:g}, num_gpus={cfg.num_gpus:g}"
                f"{', resources=' + str(cfg.resources) if cfg.resources else ''}) within {cfg.start_timeout:g}s; the "
                f"cluster has {ray.available_resources()}: lower executor.actors or the resources per actor, or "
                "add nodes") from None
        except ray.exceptions.RayError as exc:
            raise PromptweaveError(f"executor: the Ray actors could not start: {_last_line(exc)}") from None
        for st, info in zip(self.stats, infos):
            st.host, st.pid = info["host"], info["pid"]
        self.probe = CacheProbe(self.engine, infos[0]["models"])

    def actor_pids(self) -> list[int]:
        """The PID of each actor's process now (a restarted actor has a new one)."""
        import ray

        return [info["pid"] for info in ray.get([a.info.remote() for a in self.actors])]

    async def run(self, rows: Iterable[Row], emit: Emit) -> None:
        import ray

        assert self.probe is not None
        probe, cfg = self.probe, self.cfg
        written: set[str] = set()

        def write(record: dict[str, Any]) -> None:
            if record["key"] in written:
                self.dropped += 1
                return
            written.add(record["key"])
            emit(record)

        source = iter(rows)

        async def next_chunk() -> Chunk | None:
            out: list[tuple[int, str, dict[str, Any]]] = []
            seeds: dict[str, Wire] = {}
            for row in source:
                record, found = await probe.probe(row)
                if record is not None:
                    self.from_cache += 1
                    write(record)
                    continue
                out.append((row.index, row.key, row.fields))
                seeds.update(found)
                if len(out) >= cfg.chunk_size:
                    break
            return (out, seeds) if out else None

        async def send(i: int, chunk: Chunk) -> dict[str, Any]:
            return await self.actors[i].run_chunk.remote(*chunk)

        limit = cfg.max_in_flight or len(self.actors)
        load = [0] * len(self.actors)
        retry: deque[Chunk] = deque()
        ahead: deque[Chunk] = deque()  # one chunk probed while the others run: sent the moment a slot frees
        out: dict[asyncio.Future[dict[str, Any]], tuple[int, Chunk]] = {}
        exhausted = False
        try:
            while True:
                while len(out) < limit:
                    now = time.monotonic()
                    ready = [j for j in range(len(self.actors)) if j not in self.dead and self._paused.get(j, 0) <= now]
                    if not ready:
                        break
                    chunk = retry.popleft() if retry else ahead.popleft() if ahead else None
                    if chunk is None and not exhausted:
                        chunk = await next_chunk()
                    if chunk is None:
                        exhausted = True
                        break
                    i = min(ready, key=load.__getitem__)
                    load[i] += 1
                    out[asyncio.ensure_future(send(i, chunk))] = (i, chunk)
                wake = min(self._paused.values(), default=None)
                if not out:
                    if not retry and not ahead and exhausted:
                        break
                    await asyncio.sleep(max(0.0, (wake or time.monotonic()) - time.monotonic()))
                    self._unpause()
                    continue
                if not ahead and not exhausted:
                    nxt = await next_chunk()
                    if nxt is None:
                        exhausted = True
                    else:
                        ahead.append(nxt)
                timeout = None if wake is None else max(0.0, wake - time.monotonic())
                done, _ = await asyncio.wait(out, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                self._unpause()
                for fut in done:
                    i, chunk = out.pop(fut)
                    load[i] -= 1
                    try:
                        result = fut.result()
                    except ray.exceptions.RayActorError as exc:
                        self._lost(i, chunk, exc)
                        retry.append(chunk)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        raise PromptweaveError(f"executor: an actor failed: {_last_line(exc)}") from None
                    self._failures[i] = 0
                    self._take(i, len(chunk[0]), result, write)
                    if result["down"]:
                        raise EndpointDown(result["down"])
        finally:
            for fut in out:
                fut.cancel()
            await asyncio.gather(*out, return_exceptions=True)

    def _unpause(self) -> None:
        now = time.monotonic()
        for j in [j for j, t in self._paused.items() if t <= now]:
            del self._paused[j]

    def _lost(self, i: int, chunk: Chunk, exc: BaseException) -> None:
        """A send failed: the actor died or is being restarted by Ray. The chunk goes to the next
        ready actor; this one rests (0.5 s, doubling) while Ray restarts it, and leaves the pool
        after ``_GIVE_UP`` failures in a row (its restarts are spent, or it cannot start)."""
        st = self.stats[i]
        st.failed_sends += 1
        n = self._failures[i] = self._failures.get(i, 0) + 1
        log.warning("Ray actor %d (pid %d on %s) failed a chunk of %d rows, which is sent again: %s",
                    i, st.pid, st.host, len(chunk[0]), _last_line(exc))
        if n >= _GIVE_UP or self.cfg.max_restarts == 0:
            self.dead.add(i)
            if len(self.dead) == len(self.actors):
                raise PromptweaveError(
                    f"executor: every Ray actor is gone (last: {_last_line(exc)}); the rows written so far are "
                    "kept: run the same command to resume")
        else:
            self._paused[i] = time.monotonic() + min(10.0, 0.5 * 2 ** (n - 1))

    def _take(self, i: int, n_rows: int, result: dict[str, Any], write: Emit) -> None:
        """Store a chunk's results: completions into the cache file, usage into the ledgers, then rows."""
        cache = self.engine.cache
        if cache is not None:
            for key, wire in result["completions"].items():
                cache.put(key, from_wire(wire))
        st = self.stats[i]
        st.chunks += 1
        st.rows += n_rows
        for name, d in result["usage"].items():
            used = Ledger(**d)
            self.engine.ledgers.setdefault(name, Ledger()).add(used)
            st.usage.setdefault(name, Ledger()).add(used)
        for record in result["records"]:
            write(record)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone, or Ray shutting down
                pass
        await self.engine._close_models()
        if self._owns_ray:
            ray.shutdown()

    def manifest(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.cfg.address or "local", "chunk_size": self.cfg.chunk_size,
                "rows_from_driver_cache": self.from_cache, "records_dropped_as_duplicates": self.dropped,
                "actors": [st.to_dict() for st in self.stats]}

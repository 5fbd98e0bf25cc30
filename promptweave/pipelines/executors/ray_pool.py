"""The Ray executor: the driver probes its cache, then sends the rows left to a pool of actors
(:class:`.worker.RowWorker`), each with its own model runtimes.

Each actor holds a sliding window of up to ``chunk_size`` rows: the driver sends them in batches
of a quarter window and, as each batch comes back, sends the actor the next one, so the actor never
idles while its finished rows travel back and the driver writes them. The driver stays the single
writer of ``results.jsonl`` and of the cache file: actors return finished records, their new
completions and their usage. Rows out at once stay bounded (``max_in_flight`` windows over all
actors, default one per actor), and the driver probes one batch ahead, no more: back-pressure. An
actor that dies is restarted by Ray (``max_restarts``) and the rows it held, at most one window,
are sent again; records of keys already written in this run are dropped, so no row is written
twice. Ctrl-C (or any error) kills the actors; the rows written so far stay, and the same command
resumes.
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

Item = tuple[tuple[int, str, dict[str, Any]], dict[str, Wire]]  # a row as sent, and the completions found for it
Batch = list[Item]
_SLICES = 4  # batches per chunk_size window: an actor returns rows a quarter window at a time


def batch_size(chunk_size: int) -> int:
    """Rows per send: a slice of the window, so an actor gets new rows while it runs the others."""
    return max(1, -(-chunk_size // _SLICES))


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
    batches: int = 0
    rows: int = 0
    failed_sends: int = 0  # batches that came back failed because it died or was restarting (each sent again)
    usage: dict[str, Ledger] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "batches": self.batches, "rows": self.rows,
                "failed_sends": self.failed_sends, "usage": {k: v.to_dict() for k, v in self.usage.items()}}


class RayExecutor:
    def __init__(self, engine: Engine, cfg: ExecutorConfig) -> None:
        self.engine, self.cfg = engine, cfg
        self.actors: list[Any] = []
        self.stats: list[ActorStats] = []
        self.dead: set[int] = set()
        self._failures: dict[int, int] = {}  # deaths in a row without a batch returned, per actor
        self._gen: dict[int, int] = {}  # deaths seen so far, per actor: the batches of one death count once
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

    def _windows(self) -> tuple[int, int]:
        """(rows one actor may hold, rows all actors may hold): ``max_in_flight`` windows of
        ``chunk_size`` rows, default one per actor; more windows than actors widen each actor's."""
        windows = self.cfg.max_in_flight or self.cfg.actors
        return self.cfg.chunk_size * -(-windows // self.cfg.actors), self.cfg.chunk_size * windows

    def actor_pids(self) -> list[int]:
        """The PID of each actor's process now (a restarted actor has a new one)."""
        import ray

        return [info["pid"] for info in ray.get([a.info.remote() for a in self.actors])]

    async def run(self, rows: Iterable[Row], emit: Emit) -> None:
        import ray

        assert self.probe is not None
        probe, cfg, n_actors = self.probe, self.cfg, len(self.actors)
        written: set[str] = set()

        def write(record: dict[str, Any]) -> None:
            if record["key"] in written:
                self.dropped += 1
                return
            written.add(record["key"])
            emit(record)

        source = iter(rows)
        pending: deque[Item] = deque()  # probed rows (and rows of failed batches, first) waiting for an actor
        exhausted = False

        async def probe_ahead(want: int) -> None:
            """Probe rows until ``want`` wait for an actor: rows the cache answers are written here."""
            nonlocal exhausted
            while len(pending) < want and not exhausted:
                row = next(source, None)
                if row is None:
                    exhausted = True
                    break
                record, found = await probe.probe(row)
                if record is not None:
                    self.from_cache += 1
                    write(record)
                else:
                    pending.append(((row.index, row.key, row.fields), found))

        async def send(i: int, batch: Batch) -> dict[str, Any]:
            seeds: dict[str, Wire] = {}
            for _, found in batch:
                seeds.update(found)
            return await self.actors[i].run_batch.remote([r for r, _ in batch], seeds)

        per_actor, total = self._windows()
        step = batch_size(cfg.chunk_size)
        load = [0] * n_actors  # rows each actor holds and has not returned
        out: dict[asyncio.Future[dict[str, Any]], tuple[int, int, Batch]] = {}  # -> actor, its generation, rows
        try:
            while True:
                while True:  # top up every actor with room for a batch
                    now = time.monotonic()
                    room_total = total - sum(load)
                    ready = [j for j in range(n_actors) if j not in self.dead and self._paused.get(j, 0) <= now]
                    if not ready or room_total <= 0:
                        break
                    i = min(ready, key=load.__getitem__)
                    await probe_ahead(step)
                    room = min(per_actor - load[i], room_total)
                    if not pending or room < min(step, len(pending)):
                        break  # no rows left, or wait until a batch returns: fewer, fuller sends
                    batch = [pending.popleft() for _ in range(min(room, step, len(pending)))]
                    load[i] += len(batch)
                    out[asyncio.ensure_future(send(i, batch))] = (i, self._gen.get(i, 0), batch)
                wake = min(self._paused.values(), default=None)
                if not out:
                    if not pending and exhausted:
                        break
                    await asyncio.sleep(max(0.0, (wake or time.monotonic()) - time.monotonic()))
                    self._unpause()
                    continue
                await probe_ahead(step)  # one batch ready the moment an actor returns one
                timeout = None if wake is None else max(0.0, wake - time.monotonic())
                done, _ = await asyncio.wait(out, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                self._unpause()
                for fut in done:
                    i, gen, batch = out.pop(fut)
                    load[i] -= len(batch)
                    try:
                        result = fut.result()
                    except ray.exceptions.RayActorError as exc:
                        self._lost(i, gen, exc)
                        pending.extendleft(reversed(batch))  # sent again first, to any actor
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        raise PromptweaveError(f"executor: an actor failed: {_last_line(exc)}") from None
                    self._failures[i] = 0
                    self._take(i, len(batch), result, write)
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

    def _lost(self, i: int, gen: int, exc: BaseException) -> None:
        """A batch failed: the actor died or is being restarted by Ray, and its rows go to the next
        ready actor. The first failed batch of a death (``gen``, the actor's generation when the
        batch was sent, is current) rests the actor (0.5 s, doubling) while Ray restarts it; after
        ``_GIVE_UP`` such failures in a row (its restarts are spent, or it cannot start) it leaves the
        pool. The other batches it held fail with the same death and count once."""
        st = self.stats[i]
        st.failed_sends += 1
        if gen != self._gen.get(i, 0):
            return
        self._gen[i] = gen + 1
        n = self._failures[i] = self._failures.get(i, 0) + 1
        log.warning("Ray actor %d (pid %d on %s) failed; the rows it held are sent again: %s",
                    i, st.pid, st.host, _last_line(exc))
        if n >= _GIVE_UP or self.cfg.max_restarts == 0:
            self.dead.add(i)
            if len(self.dead) == len(self.actors):
                raise PromptweaveError(
                    f"executor: every Ray actor is gone (last: {_last_line(exc)}); the rows written so far are "
                    "kept: run the same command to resume")
        else:
            self._paused[i] = time.monotonic() + min(10.0, 0.5 * 2 ** (n - 1))

    def _take(self, i: int, n_rows: int, result: dict[str, Any], write: Emit) -> None:
        """Store a batch's results: completions into the cache file, usage into the ledgers, then rows."""
        cache = self.engine.cache
        if cache is not None:
            for key, wire in result["completions"].items():
                cache.put(key, from_wire(wire))
        st = self.stats[i]
        st.batches += 1
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

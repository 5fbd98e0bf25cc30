"""The driver's cache look-up for a Ray run.

A row's prompts depend on earlier steps' answers, so the driver cannot list a row's cache keys
in advance: it runs the row through the steps against runtimes whose backend never calls a
model (:class:`ProbeBackend`) and whose cache is the pipeline's cache file. A row every call of
which is in the cache finishes right there, with no actor and no model call (as a local re-run
would). Any other row goes to an actor with the completions the probe did find (its ``seeds``),
so the actor pays only for what the cache lacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...models.base import BackendError, BaseChatModel, Completion, GenParams, Message
from ...models.runtime import Ledger, ModelRuntime
from ..steps import Row
from .worker import Wire, to_wire

if TYPE_CHECKING:
    from ...models.cache import CompletionCache
    from ..engine import Engine


class ProbeBackend(BaseChatModel):
    """Stands in for a model with the real one's identity (so cache keys match); every call
    is a miss."""

    def __init__(self, identity: dict[str, Any]) -> None:
        self.identity = identity
        self.missed = False

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.missed = True
        raise BackendError("not in the cache", retryable=False, kind="internal")

    async def aclose(self) -> None:
        return None


class _Recorder:
    """The cache file, noting every hit of the row being probed."""

    def __init__(self, cache: CompletionCache) -> None:
        self.cache = cache
        self.hits: dict[str, Completion] = {}

    def get(self, key: str) -> Completion | None:
        hit = self.cache.get(key)
        if hit is not None:
            self.hits[key] = hit
        return hit

    def put(self, key: str, c: Completion) -> None:  # never called: a probe call never succeeds
        self.cache.put(key, c)


class CacheProbe:
    """Fills ``engine.runtimes`` with probe runtimes; :meth:`probe` runs one row against them."""

    def __init__(self, engine: Engine, identities: dict[str, dict[str, Any]]) -> None:
        self.engine = engine
        self.enabled = engine.cache is not None
        self.recorder = _Recorder(engine.cache) if engine.cache is not None else None
        self.backends: list[ProbeBackend] = []
        configs = {"default": engine.pipeline.model, **engine.pipeline.models}
        for name, cfg in configs.items():
            engine.ledgers.setdefault(name, Ledger())
            backend = ProbeBackend(identities[name])
            self.backends.append(backend)
            engine.runtimes[name] = ModelRuntime(cfg, backend, self.recorder, Ledger())  # type: ignore[arg-type]

    async def probe(self, row: Row) -> tuple[dict[str, Any] | None, dict[str, Wire]]:
        """(the finished record, {}) when the cache answers every call of the row, else (None,
        the completions it found). Rows are probed one at a time: the ledgers then tell one
        row's usage, which counts only when the row finishes here."""
        if not self.enabled or self.recorder is None:
            return None, {}
        self.recorder.hits = {}
        for backend in self.backends:
            backend.missed = False
        for rt in self.engine.runtimes.values():
            rt.ledger = Ledger()
        record = await self.engine._run_row(Row(index=row.index, key=row.key, fields=row.fields))
        if any(b.missed for b in self.backends):
            return None, {k: to_wire(c) for k, c in self.recorder.hits.items()}
        for name, rt in self.engine.runtimes.items():
            self.engine.ledgers[name].add(rt.ledger)
        return record, {}

"""The one place that knows about concurrency, rate limits, retries, timeouts, caching and
usage accounting. Every backend is wrapped in a :class:`ModelRuntime`; steps only ever call
:meth:`ModelRuntime.chat`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from .. import secrets
from ..errors import PromptweaveError
from .base import BackendError, ChatModel, Completion, GenParams, Message
from .cache import CompletionCache, canonical_json, key_from_parts, params_json
from .spec import ModelConfig

log = logging.getLogger("promptweave.runtime")


class EndpointDown(PromptweaveError):
    """The circuit breaker tripped: ``model.circuit_breaker`` connection attempts in a row failed
    (refused, unknown host, reset; after resets, nothing older was left in flight to be answered;
    see ``_Breaker``). The run stops at once instead of retrying every row to exhaustion; rows already
    finished are saved and the others are left unrun (not recorded as errors), so running the
    same command again resumes."""

    exit_code = 3


@dataclass
class CallResult:
    """The outcome of one logical request, as a step sees it. ``error`` is set (and ``text`` is
    None) when every attempt failed; a step records that as an error, never as a score."""

    text: str | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    key: str = ""
    latency_s: float = 0.0  # wall time of the backend call, retries and their waits included

    @property
    def ok(self) -> bool:
        return self.error is None

    def trace(self) -> dict[str, Any]:
        """The fields worth keeping in a results row."""
        d = {"key": self.key[:16], "cached": self.cached, "attempts": self.attempts,
             "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
             "finish_reason": self.finish_reason}
        if not self.cached:
            d["latency_s"] = round(self.latency_s, 4)
        if self.error:
            d["error"] = self.error
        return d


@dataclass
class Ledger:
    """Usage counters. ``calls`` counts requests that reached the backend (retries included);
    ``requests`` counts logical requests, ``cache_hits`` those answered from the cache."""

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cost"] = round(self.cost, 6)
        return d

    def add(self, other: Ledger) -> None:
        for k in ("requests", "calls", "cache_hits", "retries", "errors", "prompt_tokens",
                  "completion_tokens", "cost"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k, v in other.by_status.items():
            self.by_status[k] = self.by_status.get(k, 0) + v


class RateLimiter:
    """Sliding one-minute window over requests and (estimated) tokens."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.active = rpm is not None or tpm is not None
        self._events: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._events and now - self._events[0][0] >= 60.0:
                    self._events.popleft()
                used_tokens = sum(t for _, t in self._events)
                rpm_ok = self.rpm is None or len(self._events) < self.rpm
                tpm_ok = self.tpm is None or used_tokens + tokens <= self.tpm or not self._events
                if rpm_ok and tpm_ok:
                    self._events.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, 60.0 - (now - self._events[0][0])))


class _Batcher:
    """Groups concurrent requests with equal params into one ``complete_batch`` call."""

    def __init__(self, backend: ChatModel, max_batch: int, window: float = 0.005) -> None:
        self.backend, self.max_batch, self.window = backend, max_batch, window
        self._pending: dict[str, list[tuple[list[Message], asyncio.Future[Completion]]]] = {}
        self._params: dict[str, GenParams] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}

    async def submit(self, messages: list[Message], params: GenParams) -> Completion:
        pkey = params.model_dump_json()
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(pkey, []).append((messages, fut))
        self._params[pkey] = params
        if len(self._pending[pkey]) >= self.max_batch:
            self._spawn(pkey, delay=0.0)
        elif pkey not in self._flushers:
            self._spawn(pkey, delay=self.window)
        return await fut

    def _spawn(self, pkey: str, delay: float) -> None:
        old = self._flushers.pop(pkey, None)
        if old is not None and delay == 0.0 and not old.done():
            old.cancel()
        self._flushers[pkey] = asyncio.ensure_future(self._flush(pkey, delay))

    async def _flush(self, pkey: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        self._flushers.pop(pkey, None)
        items = self._pending.pop(pkey, [])
        while items:
            chunk, items = items[: self.max_batch], items[self.max_batch:]
            try:
                results = await self.backend.complete_batch([m for m, _ in chunk], self._params[pkey])
            except BackendError as exc:
                results = [exc] * len(chunk)
            except Exception as exc:  # noqa: BLE001 - a batch crash fails each item, visibly
                results = [BackendError(f"{type(exc).__name__}: {exc}")] * len(chunk)
            for (_, fut), res in zip(chunk, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)


def _failure_label(exc: BackendError) -> str:
    """A ledger label for a failure without an HTTP status: its kind, else the backends'
    message prefixes."""
    if exc.kind in ("connect", "connection"):
        return "connection"
    if exc.kind in ("timeout", "malformed", "refusal", "internal"):
        return exc.kind
    message = str(exc)
    if "timed out" in message:
        return "timeout"
    if message.startswith("connection error"):
        return "connection"
    if message.startswith(("malformed", "response has no choices")):
        return "malformed"
    return "other"


def _outcome(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


if sys.version_info >= (3, 11):
    async def _with_timeout(coro: Awaitable[Completion], seconds: float) -> Completion:
        # asyncio.timeout arms one timer; wait_for (3.11) wraps each call in a Task of its own
        async with asyncio.timeout(seconds):
            return await coro
else:  # pragma: no cover - Python 3.10
    async def _with_timeout(coro: Awaitable[Completion], seconds: float) -> Completion:
        return await asyncio.wait_for(coro, timeout=seconds)


class _Breaker:
    """The circuit breaker: ``limit`` connection failures in a row (none made, or made and then
    dropped) mean the endpoint is down. Any answer, even an HTTP 500, resets the count; a timeout
    neither counts nor resets (a slow server is not a dead one).

    A refusal or an unknown host trips it at once: a live server never refuses. After resets it
    first waits for the attempts that were already in flight when the run of failures began,
    since one of them may yet be answered. At high concurrency a live server drops a few requests
    at a moment: with 64 in flight and 6% of connections reset, each 760 calls held runs of 3
    with no answer between, and in one CI run a run of 5 stopped a live server as dead. One that
    resets some at once while its answers take a second chains several resets before the next
    answer. Such an attempt is waited for while it is younger than twice the slowest of the last
    32 answers (at least 1 s), or, before any answer, until it times out (a wedged request does
    not hold a dead server's trip for the whole timeout once answers have shown how long one
    takes); and only while the run is shorter than ``limit`` for each of them and one more (one
    wedged request against 10 resets is not the sign of a live server that 60 in flight are).

    A call whose last attempt fails while a trip waits on those attempts waits with it, so that
    its row is left unrun if the breaker trips, and recorded as an error only if an answer
    comes first.
    """

    def __init__(self, limit: int, timeout: float, where: object, on_trip: Callable[[], None]) -> None:
        self.limit, self.timeout, self.where, self.on_trip = limit, timeout, where, on_trip
        self.failures = 0
        self.since = 0.0  # when the first of them failed
        self.last: BackendError | None = None
        self.sent: dict[int, float] = {}  # attempts in flight: when each got its slot
        self.token = 0
        self.latencies: deque[float] = deque(maxlen=32)  # of the last answers
        self.down: EndpointDown | None = None
        self.tripped = asyncio.Event()
        self.settled = asyncio.Event()  # a pending trip was decided (tripped, or the count reset)
        self.timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """The count is at the limit, and the trip waits for older attempts in flight."""
        return bool(self.limit) and self.failures >= self.limit and self.down is None

    def begin(self) -> int:
        self.token += 1
        self.sent[self.token] = time.monotonic()
        return self.token

    def answered(self, token: int) -> None:
        self.latencies.append(time.monotonic() - self.sent.pop(token))
        self._reset()

    def failed(self, token: int, exc: BackendError) -> None:
        self.sent.pop(token, None)
        if exc.kind in ("connect", "connection"):
            if self.failures == 0:
                self.since = time.monotonic()
            self.failures += 1
            self.last = exc
            self.check(at_once=exc.kind == "connect")
        elif exc.kind == "timeout":
            self.check()
        else:
            self._reset()

    def ended(self, token: int) -> None:
        """An attempt ended with neither an answer nor a backend error (cancelled, say)."""
        self.sent.pop(token, None)
        self.check()

    async def hold(self) -> None:
        """Wait while a trip is pending."""
        while self.pending:
            self.settled.clear()
            await self.settled.wait()

    def check(self, at_once: bool = False) -> None:
        if not self.pending:
            return
        if not at_once:
            now = time.monotonic()
            wait = max(1.0, 2 * max(self.latencies)) if self.latencies else self.timeout
            left = [sent + wait - now for sent in self.sent.values() if sent < self.since and now - sent < wait]
            if left and self.failures < self.limit * (1 + len(left)):
                # one of them may yet be answered: decide when the oldest is too old to be
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = asyncio.get_running_loop().call_later(min(left) + 0.001, self.check)
                return
        last = secrets.scrub(str(self.last)).rsplit("/: ", 1)[-1]  # the URL is said once
        self.down = EndpointDown(
            f"cannot reach the model server at {self.where} ({self.failures} connection attempts in a "
            f"row failed: {last}); the run stopped early with finished rows saved and the rest not run: "
            "start the server or fix model.base_url, then run the same command again to resume")
        self.tripped.set()
        self.settled.set()
        self.on_trip()
        log.debug("circuit breaker tripped for %s", self.where)

    def _reset(self) -> None:
        if self.failures:
            self.failures = 0
            self.settled.set()


class ModelRuntime:
    """Wraps one backend with everything a production call needs."""

    def __init__(
        self,
        cfg: ModelConfig,
        backend: ChatModel,
        cache: CompletionCache | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.cache = cache if cfg.cache else None
        self.ledger = ledger or Ledger()
        self.params = cfg.gen_params()
        parallel = getattr(backend, "max_parallel", None)
        concurrency = cfg.max_concurrency
        if "max_concurrency" not in cfg.model_fields_set and getattr(backend, "default_concurrency", None):
            concurrency = backend.default_concurrency  # type: ignore[attr-defined]
        self.concurrency = min(concurrency, parallel) if parallel else concurrency
        self._sem = asyncio.Semaphore(self.concurrency)
        self._own_timeout = bool(getattr(backend, "owns_timeout", False))
        self._limiter = RateLimiter(cfg.rpm, cfg.tpm)
        self._batcher = _Batcher(backend, backend.max_batch) if backend.max_batch > 1 else None
        self._inflight: dict[str, asyncio.Future[CallResult]] = {}
        # a trip wakes the calls waiting for a slot (all of them may be held by wedged requests):
        # one extra slot lets the first in, it sees the trip and leaves, which lets the next in
        self._breaker = _Breaker(cfg.circuit_breaker, cfg.timeout,
                                 backend.identity.get("base_url") or backend.identity.get("model"),
                                 on_trip=self._sem.release)
        self._identity_json: str | None = None
        self._params_json = ""

    @property
    def identity(self) -> dict[str, Any]:
        return self.backend.identity

    def _key(self, params: GenParams, messages: list[Message]) -> str:
        if self._identity_json is None:
            self._identity_json = canonical_json(self.backend.identity)
            self._params_json = params_json(self.params)
        pjson = self._params_json if params is self.params else params_json(params)
        return key_from_parts(self._identity_json, pjson, messages)

    async def chat(self, messages: list[Message], **overrides: Any) -> CallResult:
        """Send one chat request; ``overrides`` change sampling params (e.g. temperature)."""
        if self._breaker.down is not None:
            raise self._breaker.down
        params = self.params.merged(**overrides)
        key = self._key(params, messages)
        self.ledger.requests += 1
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.ledger.cache_hits += 1
                return CallResult(hit.text, cached=True, prompt_tokens=hit.prompt_tokens,
                                  completion_tokens=hit.completion_tokens,
                                  finish_reason=hit.finish_reason, key=key)
        # identical requests in flight share one call
        if key in self._inflight:
            self.ledger.cache_hits += 1
            shared = await asyncio.shield(self._inflight[key])
            return CallResult(**{**shared.__dict__, "cached": True, "attempts": 0})
        fut: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._call(messages, params, key)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._inflight.pop(key, None)

    async def _call(self, messages: list[Message], params: GenParams, key: str) -> CallResult:
        attempts = 0
        started = time.perf_counter()

        async def attempt() -> Completion:
            nonlocal attempts
            if self._breaker.down is not None:
                raise self._breaker.down
            attempts += 1
            self.ledger.calls += 1
            return await self._attempt(messages, params)

        try:
            try:
                # most calls succeed at once: building tenacity's machinery per request cost
                # ~200us (3% of a request against a fast local server), so it waits for a failure
                completion = await attempt()
            except BackendError as first:
                if not self._retryable(first) or self.cfg.max_retries == 0:
                    raise
                completion = await self._retry(attempt, first)
        except BackendError as exc:
            await self._breaker.hold()  # a trip that waits on older attempts: this row waits with it
            if self._breaker.down is not None:  # tripped (on this call's own last attempt, maybe):
                raise self._breaker.down from None  # the row is left unrun, not recorded as an error
            self.ledger.errors += 1
            self._count_status(exc)
            reason = secrets.scrub(str(exc) or type(exc).__name__)
            if attempts > 1:
                reason += f" (after {attempts} attempts)"
            return CallResult(None, error=reason, attempts=attempts, key=key,
                              latency_s=time.perf_counter() - started)

        # a server's usage counts are data: only non-negative integers enter the ledger
        completion.prompt_tokens = _token_count(completion.prompt_tokens)
        completion.completion_tokens = _token_count(completion.completion_tokens)
        self.ledger.prompt_tokens += completion.prompt_tokens
        self.ledger.completion_tokens += completion.completion_tokens
        if self.cfg.price is not None:
            self.ledger.cost += (completion.prompt_tokens * self.cfg.price.input
                                 + completion.completion_tokens * self.cfg.price.output) / 1e6
        if self.cache is not None:
            self.cache.put(key, completion)
        return CallResult(completion.text, attempts=attempts, prompt_tokens=completion.prompt_tokens,
                          completion_tokens=completion.completion_tokens,
                          finish_reason=completion.finish_reason, key=key,
                          latency_s=time.perf_counter() - started)

    def _retryable(self, exc: BaseException) -> bool:
        """Retry what may pass next time, unless the server asks for a longer wait than
        ``retry_after_max``: then the row fails at once with the reason (never a silent stall)."""
        if not (isinstance(exc, BackendError) and exc.retryable):
            return False
        if exc.retry_after is not None and exc.retry_after > self.cfg.retry_after_max:
            exc.args = (f"{exc} (server asked to retry after {exc.retry_after:g}s, over "
                        f"retry_after_max={self.cfg.retry_after_max:g}s)",)
            return False
        return True

    async def _retry(self, attempt: Callable[[], Awaitable[Completion]], first: BackendError) -> Completion:
        """Attempts 2 .. max_retries + 1, under tenacity, after the wait the first failure asks for."""
        self._note_retry(1, first)
        await self._sleep(self._delay(1, first))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.cfg.max_retries),
            retry=retry_if_exception(self._retryable),
            wait=lambda state: self._delay(state.attempt_number + 1, _outcome(state)),
            before_sleep=lambda state: self._note_retry(state.attempt_number + 1, _outcome(state)),
            sleep=self._sleep,
            reraise=True,
        )
        return await retrying(attempt)

    async def _sleep(self, seconds: float) -> None:
        """A backoff wait that ends at once, raising :class:`EndpointDown`, when the breaker trips."""
        if self._breaker.down is None:
            try:
                await asyncio.wait_for(self._breaker.tripped.wait(), seconds)
            except asyncio.TimeoutError:
                return
        assert self._breaker.down is not None
        raise self._breaker.down

    async def _attempt(self, messages: list[Message], params: GenParams) -> Completion:
        if self._limiter.active:
            est_tokens = params.max_tokens + sum(m.approx_tokens() for m in messages)
            await self._limiter.acquire(est_tokens)
        async with self._sem:
            if self._breaker.down is not None:  # it tripped while this call waited for a slot
                raise self._breaker.down
            token = self._breaker.begin()  # (after the waits for a slot)
            try:
                completion = await self._send(messages, params)
            except BackendError as exc:
                self._breaker.failed(token, exc)
                raise
            except BaseException:
                self._breaker.ended(token)
                raise
            self._breaker.answered(token)
            return completion

    async def _send(self, messages: list[Message], params: GenParams) -> Completion:
        if self._batcher is not None:
            coro = self._batcher.submit(messages, params)
        else:
            coro = self.backend.complete(messages, params)
        try:
            if self._own_timeout:
                return await coro
            return await _with_timeout(coro, self.cfg.timeout)
        except asyncio.TimeoutError:
            raise BackendError(f"timed out after {self.cfg.timeout:g}s", retryable=True, kind="timeout") from None
        except (BackendError, PromptweaveError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a backend bug fails its row with one line, not a traceback
            log.debug("backend %s raised", self.backend.identity.get("backend"), exc_info=True)
            raise BackendError(f"backend error: {type(exc).__name__}: {secrets.scrub(str(exc))[:200]}",
                               kind="internal") from None

    def _delay(self, failed_attempts: int, exc: BaseException | None) -> float:
        """Seconds to wait after ``failed_attempts`` failures, the last one ``exc``."""
        if isinstance(exc, BackendError) and exc.retry_after is not None:
            # never sooner than the server asked; a little jitter on top spreads the herd
            return exc.retry_after + random.random() * 0.05 * max(exc.retry_after, 0.1)
        backoff = min(self.cfg.backoff_max, self.cfg.backoff_base * (2 ** (failed_attempts - 1)))
        return backoff * (0.5 + random.random() / 2)  # jitter in [backoff/2, backoff]

    def _note_retry(self, failed_attempts: int, exc: BaseException | None) -> None:
        self.ledger.retries += 1
        if isinstance(exc, BackendError):
            self._count_status(exc)
        log.info("retrying %s after attempt %d: %s", self.backend.identity.get("model"), failed_attempts, exc)

    def _count_status(self, exc: BackendError) -> None:
        label = str(exc.status) if exc.status else _failure_label(exc)
        self.ledger.by_status[label] = self.ledger.by_status.get(label, 0) + 1

    async def aclose(self) -> None:
        await self.backend.aclose()


def _token_count(value: object) -> int:
    """A usage count from a server: a non-negative int, else 0 (negative, text, NaN, bool)."""
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from promptweave.models import BackendError, BaseChatModel, Completion, GenParams, Message, ModelConfig
from promptweave.models.cache import CompletionCache, cache_key
from promptweave.models.runtime import CallResult, ModelRuntime
from promptweave.models.scripted import ScriptedModel

MSG = [Message("user", "hello")]


class Flaky(BaseChatModel):
    """Fails with the given errors in order, then answers."""

    def __init__(self, errors: list[BackendError]) -> None:
        self.errors = list(errors)
        self.times: list[float] = []
        self.identity = {"backend": "flaky", "model": "f"}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.times.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return Completion("ok", 3, 1, "stop")


def rt(backend: object, **cfg: object) -> ModelRuntime:
    base = {"backend": "scripted", "backoff_base": 0.01, "max_retries": 3}
    return ModelRuntime(ModelConfig(**{**base, **cfg}), backend)  # type: ignore[arg-type]


async def test_retry_after_is_honoured() -> None:
    backend = Flaky([BackendError("429", retryable=True, retry_after=0.3, status=429)])
    runtime = rt(backend)
    res = await runtime.chat(MSG)
    assert res.ok and res.attempts == 2
    assert backend.times[1] - backend.times[0] >= 0.3
    assert runtime.ledger.retries == 1 and runtime.ledger.by_status == {"429": 1}


async def test_attempts_are_bounded_and_errors_are_recorded() -> None:
    backend = Flaky([BackendError("boom", retryable=True, status=500)] * 10)
    runtime = rt(backend, max_retries=2)
    res = await runtime.chat(MSG)
    assert not res.ok and res.text is None
    assert res.attempts == 3 and len(backend.times) == 3
    assert "boom" in (res.error or "") and "after 3 attempts" in (res.error or "")
    assert runtime.ledger.errors == 1 and runtime.ledger.calls == 3


async def test_non_retryable_errors_fail_at_once() -> None:
    backend = Flaky([BackendError("bad request", retryable=False, status=400)])
    res = await rt(backend).chat(MSG)
    assert not res.ok and res.attempts == 1


async def test_timeout_is_retried() -> None:
    class Slow(Flaky):
        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            self.times.append(time.monotonic())
            if len(self.times) == 1:
                await asyncio.sleep(5)
            return Completion("late but fine")

    res = await rt(Slow([]), timeout=0.2).chat(MSG)
    assert res.ok and res.attempts == 2 and res.text == "late but fine"


async def test_concurrency_is_bounded() -> None:
    active = peak = 0

    class Counting(Flaky):
        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            return Completion(str(messages[0].content))

    runtime = rt(Counting([]), max_concurrency=4, cache=False)
    results = await asyncio.gather(*(runtime.chat([Message("user", str(i))]) for i in range(20)))
    assert [r.text for r in results] == [str(i) for i in range(20)]
    assert peak == 4


async def test_cache_and_inflight_dedup(tmp_path: Path) -> None:
    backend = ScriptedModel(default="hi {echo}", delay=0.05)
    cache = CompletionCache(tmp_path / "c.sqlite")
    runtime = ModelRuntime(ModelConfig(backend="scripted"), backend, cache)
    same = await asyncio.gather(*(runtime.chat(MSG) for _ in range(5)))
    assert len(backend.calls) == 1 and {r.text for r in same} == {"hi hello"}
    again = await runtime.chat(MSG)
    assert again.cached and len(backend.calls) == 1
    other = await runtime.chat(MSG, temperature=0.7)  # other params, other key
    assert not other.cached and len(backend.calls) == 2
    assert runtime.ledger.calls == 2 and runtime.ledger.cache_hits == 5


def test_cache_key_never_holds_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptweave.models.openai_api import create

    monkeypatch.setenv("PW_SECRET_KEY", "sk-MARKER-123")
    model = create(ModelConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1",
                               api_key_env="PW_SECRET_KEY"))
    assert "sk-MARKER-123" not in repr(model.identity)
    k1 = cache_key(model.identity, GenParams(), MSG)
    monkeypatch.setenv("PW_SECRET_KEY", "sk-OTHER")
    model2 = create(ModelConfig(backend="openai", model="m", base_url="http://127.0.0.1:9/v1",
                                api_key_env="PW_SECRET_KEY"))
    assert cache_key(model2.identity, GenParams(), MSG) == k1  # the key does not change the cache key


async def test_batching_backend_gets_whole_batches() -> None:
    class Batchy(BaseChatModel):
        max_batch = 8
        identity = {"backend": "batchy"}

        def __init__(self) -> None:
            self.batches: list[int] = []

        async def complete_batch(self, batch: list[list[Message]], params: GenParams) -> list[Completion | BackendError]:
            self.batches.append(len(batch))
            return [Completion(f"out {m[0].content}") for m in batch]

    backend = Batchy()
    runtime = rt(backend, max_concurrency=64, cache=False)
    results = await asyncio.gather(*(runtime.chat([Message("user", str(i))]) for i in range(20)))
    assert [r.text for r in results] == [f"out {i}" for i in range(20)]
    assert sum(backend.batches) == 20 and max(backend.batches) == 8 and len(backend.batches) <= 4


async def test_rate_limit_rpm_spaces_requests() -> None:
    from promptweave.models.runtime import RateLimiter

    limiter = RateLimiter(rpm=2, tpm=None)
    t0 = time.monotonic()
    await limiter.acquire(1)
    await limiter.acquire(1)
    assert time.monotonic() - t0 < 0.5  # two fit in the window
    limiter._events[0] = (limiter._events[0][0] - 59.8, 1)  # pretend the first was long ago
    await limiter.acquire(1)
    assert time.monotonic() - t0 < 1.0


async def test_backend_max_parallel_caps_concurrency() -> None:
    active = peak = 0

    class OneAtATime(Flaky):
        max_parallel = 1

        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            return Completion("ok")

    # 6 calls of 0.05 s queue one by one, and none times out although 6 x 0.05 > timeout
    runtime = rt(OneAtATime([]), max_concurrency=8, timeout=0.2, cache=False)
    results = await asyncio.gather(*(runtime.chat([Message("user", str(i))]) for i in range(6)))
    assert all(r.ok and r.attempts == 1 for r in results) and peak == 1


async def test_retry_after_beyond_the_cap_fails_the_call_at_once() -> None:
    backend = Flaky([BackendError("429", retryable=True, retry_after=3600, status=429)])
    t0 = time.monotonic()
    res = await rt(backend, retry_after_max=60).chat(MSG)
    assert not res.ok and res.attempts == 1 and time.monotonic() - t0 < 1
    assert "retry after 3600s" in (res.error or "") and "retry_after_max=60s" in (res.error or "")


# ---------------------------------------------------------------- circuit breaker


class DownAfter(BaseChatModel):
    """Answers ``ok`` for the first ``good`` calls, then fails as ``kind`` forever."""

    def __init__(self, good: int, kind: str = "connect") -> None:
        self.good, self.kind, self.calls = good, kind, 0
        self.identity = {"backend": "down", "model": "d", "base_url": "http://127.0.0.1:9/v1/"}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls += 1
        if self.calls <= self.good:
            return Completion("ok", 1, 1, "stop")
        raise BackendError(f"{self.kind} failed", retryable=True, kind=self.kind)


async def test_breaker_trips_after_consecutive_connect_failures_and_wakes_sleepers() -> None:
    from promptweave.models.runtime import EndpointDown

    backend = DownAfter(good=3)
    runtime = rt(backend, max_retries=50, backoff_base=5.0, backoff_max=60.0, circuit_breaker=4)
    started = time.monotonic()
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(10)],
                                   return_exceptions=True)
    assert time.monotonic() - started < 2.0  # the rows asleep in a 5 s backoff woke up at the trip
    ok = [r for r in results if not isinstance(r, BaseException)]
    down = [r for r in results if isinstance(r, EndpointDown)]
    assert len(ok) == 3 and all(r.ok for r in ok) and len(down) == 7
    assert "cannot reach the model server at http://127.0.0.1:9/v1/ (4 connection attempts" in str(down[0])
    assert backend.calls == 3 + 4  # nothing was sent after the trip
    with pytest.raises(EndpointDown):  # and nothing is sent later either
        await runtime.chat([Message("user", "later")])
    assert backend.calls == 7


async def test_resets_trip_the_breaker_too() -> None:
    from promptweave.models.runtime import EndpointDown

    backend = DownAfter(good=0, kind="connection")
    with pytest.raises(EndpointDown, match="3 connection attempts in a row failed"):
        await rt(backend, max_retries=9, backoff_base=0.001, circuit_breaker=3).chat(MSG)
    assert backend.calls == 3


async def test_resets_while_other_requests_are_in_flight_do_not_trip_the_breaker() -> None:
    """A live server at high concurrency drops several requests at a moment while others are in
    flight (the CI run where 5 of 64 concurrent requests reset with no answer between them): those
    may yet be answered, so the breaker waits for them, and their answers reset the count."""

    class DropsSome(BaseChatModel):
        identity = {"backend": "drops", "model": "d"}

        def __init__(self, kind: str, answer_after: float) -> None:
            self.kind, self.answer_after, self.calls, self.seen = kind, answer_after, 0, set()
            self.gate = asyncio.Event()

        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            self.calls += 1
            text = messages[0].content
            if text in self.seen:
                return Completion("ok", 1, 1, "stop")
            self.seen.add(text)
            if len(self.seen) == 8:
                self.gate.set()
            await self.gate.wait()  # all 8 in flight; then 5 dropped together, 3 answered later
            if text < "m5":
                raise BackendError(f"{self.kind} failed", retryable=True, kind=self.kind)
            await asyncio.sleep(self.answer_after)
            return Completion("ok", 1, 1, "stop")

    backend = DropsSome("connection", answer_after=0.2)
    runtime = rt(backend, max_retries=3, backoff_base=0.5, circuit_breaker=3, max_concurrency=8)
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(8)])
    assert all(r.ok for r in results) and backend.calls == 13

    from promptweave.models.runtime import EndpointDown

    refused = DropsSome("connect", answer_after=0.2)  # a refusal is no live server's answer
    runtime = rt(refused, max_retries=3, backoff_base=0.5, circuit_breaker=3, max_concurrency=8)
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(8)],
                                   return_exceptions=True)
    assert sum(isinstance(r, EndpointDown) for r in results) == 5 and refused.calls == 8


async def test_a_server_that_resets_every_request_late_trips_the_breaker_in_its_first_wave() -> None:
    """Every request is accepted, held, then reset: the breaker trips once all that were in
    flight together have failed, before any row is retried, and no row is recorded as an error."""
    from promptweave.models.runtime import EndpointDown

    class ResetsLate(BaseChatModel):
        identity = {"backend": "late", "model": "l"}
        calls = 0

        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            self.calls += 1
            await asyncio.sleep(0.05 + 0.001 * self.calls)
            raise BackendError("connection reset", retryable=True, kind="connection")

    backend = ResetsLate()
    runtime = rt(backend, max_retries=4, backoff_base=0.5, circuit_breaker=5, max_concurrency=16)
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(16)],
                                   return_exceptions=True)
    assert all(isinstance(r, EndpointDown) for r in results) and backend.calls == 16
    assert "connection attempts in a row failed: connection reset" in str(results[0])


class Wedged(BaseChatModel):
    """Answers the first ``good`` calls after ``latency``; then wedges: never answers the next
    call, resets the ``resets`` after it at once, and never answers any later one."""

    identity = {"backend": "wedged", "model": "w"}

    def __init__(self, good: int, latency: float = 0.01, resets: int = 5) -> None:
        self.good, self.latency, self.resets, self.calls = good, latency, resets, 0

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls += 1
        n = self.calls - self.good
        if n <= 0:
            await asyncio.sleep(self.latency)
            return Completion("ok", 1, 1, "stop")
        if 2 <= n <= 1 + self.resets:
            raise BackendError("connection reset", retryable=True, kind="connection")
        await asyncio.sleep(3600)
        raise AssertionError("unreachable: the runtime's timeout ends the call")


async def test_rows_whose_retries_run_out_while_a_trip_waits_are_left_unrun() -> None:
    """9 resets in a row while a request sent before them hangs: the trip waits for it (it may yet
    be answered; with no answer seen, until it times out), and rows 5-9, whose one attempt failed
    meanwhile, wait with it and are left unrun. (Rows 1-4 failed before the count reached the
    limit: with ``max_retries: 0`` those are errors, as nothing yet said the server was down.)"""
    from promptweave.models.runtime import EndpointDown

    backend = Wedged(good=0, resets=9)
    runtime = rt(backend, max_retries=0, timeout=1.5, circuit_breaker=5, max_concurrency=10)
    started = time.monotonic()
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(30)],
                                   return_exceptions=True)
    assert 1.4 < time.monotonic() - started < 10
    assert [isinstance(r, CallResult) and r.error == "connection reset" for r in results[:5]] == [False] + [True] * 4
    assert all(isinstance(r, EndpointDown) for r in [results[0], *results[5:]]), results
    assert runtime.ledger.errors == 4


async def test_once_answers_show_how_long_one_takes_a_wedged_request_holds_a_trip_only_that_long() -> None:
    """A server that answered in 10 ms wedges: the hanging request holds the trip for 1 s (twice
    the slowest recent answer, at least 1 s), not until it times out (here 4 s; 120 by default)."""
    from promptweave.models.runtime import EndpointDown

    backend = Wedged(good=40)
    runtime = rt(backend, max_retries=2, backoff_base=0.001, timeout=4, circuit_breaker=5, max_concurrency=8)
    stopped: list[float] = []

    async def call(i: int) -> CallResult | EndpointDown:
        try:
            return await runtime.chat([Message("user", f"m{i}")])
        except EndpointDown as exc:
            stopped.append(time.monotonic())
            return exc

    started = time.monotonic()
    results = await asyncio.gather(*[call(i) for i in range(100)])
    assert 0.9 < min(stopped) - started < 2.5
    ok = [r for r in results if isinstance(r, CallResult) and r.ok]
    assert len(ok) == 40 and len(stopped) == 60 and runtime.ledger.errors == 0


async def test_resets_one_after_another_count_each_though_their_rows_queued_together() -> None:
    """One slot, five rows queued at once, every connection reset, no retries: each attempt is sent
    after the one before failed, so the breaker trips at the third, not at none; the two rows
    still waiting for the slot then send nothing."""
    from promptweave.models.runtime import EndpointDown

    class SlowReset(DownAfter):
        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            await asyncio.sleep(0.01)  # the other rows are waiting for the slot by now
            return await super().complete(messages, params)

    backend = SlowReset(good=0, kind="connection")
    runtime = rt(backend, max_retries=0, circuit_breaker=3, max_concurrency=1)
    results = await asyncio.gather(*[runtime.chat([Message("user", f"m{i}")]) for i in range(5)],
                                   return_exceptions=True)
    assert backend.calls == 3 and sum(isinstance(r, EndpointDown) for r in results) >= 1


async def test_a_trip_on_a_rows_last_attempt_leaves_the_row_unrun() -> None:
    """The failure that trips the breaker is the row's last allowed attempt: the row is not
    recorded as an error (a plain resume would skip it) but left unrun, like every other."""
    from promptweave.models.runtime import EndpointDown

    backend = DownAfter(good=0)
    runtime = rt(backend, max_retries=2, backoff_base=0.001, circuit_breaker=3)
    with pytest.raises(EndpointDown, match="3 connection attempts in a row failed"):
        await runtime.chat(MSG)
    assert backend.calls == 3 and runtime.ledger.errors == 0


async def test_timeouts_and_answers_do_not_trip_the_breaker() -> None:
    backend = DownAfter(good=0, kind="timeout")
    runtime = rt(backend, max_retries=6, backoff_base=0.001, circuit_breaker=2)
    res = await runtime.chat(MSG)
    assert not res.ok and res.attempts == 7  # a slow server is not a dead one

    class Alternating(BaseChatModel):
        identity = {"backend": "alt", "model": "a"}
        n = 0

        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            self.n += 1
            if self.n % 2:
                raise BackendError("refused", retryable=True, kind="connect")
            raise BackendError("HTTP 500", retryable=True, status=500, kind="status")

    res = await rt(Alternating(), max_retries=8, backoff_base=0.001, circuit_breaker=2).chat(MSG)
    assert not res.ok and res.attempts == 9  # every answer resets the count


async def test_backend_crash_is_a_row_error_not_a_traceback() -> None:
    class Broken(BaseChatModel):
        identity = {"backend": "broken", "model": "b"}

        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            raise AttributeError("'NoneType' object has no attribute 'choices'")

    res = await rt(Broken()).chat(MSG)
    assert not res.ok and res.attempts == 1
    assert res.error == "backend error: AttributeError: 'NoneType' object has no attribute 'choices'"

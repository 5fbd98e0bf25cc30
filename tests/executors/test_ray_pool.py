"""The Ray pool's bookkeeping that needs no Ray: batch sizes, and how an actor's death is counted."""

from __future__ import annotations

import pytest

from promptweave.errors import PromptweaveError
from promptweave.pipelines.executors.ray_pool import ActorStats, RayExecutor, batch_size
from promptweave.pipelines.executors.spec import ExecutorConfig


def test_a_window_is_sent_a_quarter_at_a_time() -> None:
    assert [batch_size(n) for n in (1, 3, 4, 10, 32, 33)] == [1, 1, 1, 3, 8, 9]


def _pool(actors: int, max_restarts: int = 3) -> RayExecutor:
    pool = RayExecutor(engine=None, cfg=ExecutorConfig(kind="ray", actors=actors, max_restarts=max_restarts))  # type: ignore[arg-type]
    pool.actors = [object() for _ in range(actors)]
    pool.stats = [ActorStats() for _ in range(actors)]
    return pool


def test_the_batches_one_death_fails_count_once() -> None:
    pool = _pool(2)
    for _ in range(4):  # the window's four batches, sent before the death, all fail
        pool._lost(0, 0, RuntimeError("actor died"))
    assert pool.stats[0].failed_sends == 4 and pool._failures[0] == 1 and 0 in pool._paused
    pool._lost(0, 1, RuntimeError("still restarting"))  # a batch sent after the rest fails: a second failure
    assert pool._failures[0] == 2 and pool.dead == set()


def test_an_actor_that_keeps_failing_leaves_the_pool_and_the_last_one_stops_the_run() -> None:
    pool = _pool(2)
    for gen in range(8):
        pool._lost(0, gen, RuntimeError("cannot start"))
    assert pool.dead == {0}
    with pytest.raises(PromptweaveError, match="every Ray actor is gone.*run the same command to resume"):
        _pool(1, max_restarts=0)._lost(0, 0, RuntimeError("killed"))

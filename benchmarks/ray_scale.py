"""Throughput of the Ray executor with 1, 2 and 4 actors, and Ray with one actor against the local
executor at the same concurrency, in one run.

The model is the real local test server (``promptweave.testing``) answering every call after
100 ms; each actor (and the local executor) has 8 calls in flight (``concurrency: 8``,
``max_concurrency: 8``), so one actor's ceiling is 80 rows/s and the scaling factor shows what the
pool adds. Each configuration gets ``--seconds`` of work per actor (rows = 80 x actors x seconds)
and a fresh cache; time is that of the rows phase (``executor.run``: probing the cache,
dispatching, running, writing ``results.jsonl``), not Ray's start-up or the actors' construction,
which a long run pays once.

    PYTHONPATH=. .venv/bin/python benchmarks/ray_scale.py [--seconds 8] [--cpus 4] [--rounds 1]

Goals: >= 1.8x at 2 actors, >= 3.2x at 4; Ray with one actor >= 0.9x the local executor. The
defaults hold a window of ``chunk_size: 32`` rows per actor, refilled a quarter at a time as
batches return (a killed actor costs at most 32 calls again); the last row, ``max_in_flight: 2``
for one actor (a window of 64), shows whether a wider window would gain anything. Each round runs
every configuration in turn, local first; with ``--rounds`` > 1 the figures are medians over the
rounds and each round's ray/local ratio is printed too, so that a load spike shows. The load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from promptweave.config import load_config
from promptweave.pipelines.engine import Engine, run_dir_for
from promptweave.pipelines.executors.local import LocalExecutor
from promptweave.pipelines.executors.ray_pool import RayExecutor
from promptweave.pipelines.finish import finish_run
from promptweave.testing import serve
from tests.test_faults import make_pipeline

PER_ACTOR = 8
LATENCY = 0.1
_phase: list[float] = []


def _timed(run: Any) -> Any:
    async def wrapper(self: Any, rows: Any, emit: Any) -> None:
        t = time.perf_counter()
        await run(self, rows, emit)
        _phase.append(time.perf_counter() - t)
    return wrapper


LocalExecutor.run = _timed(LocalExecutor.run)  # type: ignore[method-assign]
RayExecutor.run = _timed(RayExecutor.run)  # type: ignore[method-assign]


def measure(tmp: Path, url: str, rows: int, executor: list[str]) -> float:
    """Rows per second of the rows phase of one fresh run."""
    d = Path(tempfile.mkdtemp(dir=tmp))
    cfg = make_pipeline(d, url, rows, model=f", max_concurrency: {PER_ACTOR}", extra=f"concurrency: {PER_ACTOR}\n")
    loaded = load_config(cfg, executor)
    engine = Engine(loaded, run_dir_for(loaded), progress=False)
    summary = asyncio.run(engine.run())
    finish_run(engine, summary)
    assert summary.ran == rows and summary.errors == 0 and summary.ledger.calls == rows, summary
    return rows / _phase[-1]


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of work per actor at the ideal rate")
    ap.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray instance")
    ap.add_argument("--rounds", type=int, default=1, help="times each configuration runs, interleaved")
    args = ap.parse_args()
    ideal = PER_ACTOR / LATENCY
    print(f"before: {_load()}", flush=True)
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR",
             object_store_memory=200 * 1024 * 1024)
    tmp = Path(tempfile.mkdtemp())
    runs: dict[str, list[float]] = {}
    with serve(delay=LATENCY) as url:
        def rows(actors: int) -> int:
            return int(ideal * actors * args.seconds)

        def on_ray(n: int, *extra: str) -> float:
            return measure(tmp, url, rows(n), ["executor.kind=ray", f"executor.actors={n}",
                                               f"executor.num_cpus={args.cpus / 4:g}", "executor.chunk_size=32", *extra])

        configs = {"local": lambda: measure(tmp, url, rows(1), []), "ray1": lambda: on_ray(1),
                   "ray2": lambda: on_ray(2), "ray4": lambda: on_ray(4),
                   "ray1x2": lambda: on_ray(1, "executor.max_in_flight=2")}  # a window of 64 rows
        for r in range(args.rounds):
            for name, fn in configs.items():
                runs.setdefault(name, []).append(fn())
            print(f"round {r + 1}: ray 1 actor / local {runs['ray1'][-1] / runs['local'][-1]:.2f}x, {_load()}",
                  flush=True)
    ray.shutdown()
    out = {name: statistics.median(v) for name, v in runs.items()}
    print(f"ceiling per actor: {ideal:.0f} rows/s ({PER_ACTOR} calls in flight, {LATENCY * 1000:.0f} ms each)")
    print(f"local executor, concurrency {PER_ACTOR}: {out['local']:7.1f} rows/s")
    for n in (1, 2, 4):
        print(f"ray, {n} actor{'s' if n > 1 else ' '}: {out[f'ray{n}']:7.1f} rows/s   "
              f"scaling {out[f'ray{n}'] / out['ray1']:.2f}x")
    print(f"ray, 1 actor, max_in_flight 2 (window 64): {out['ray1x2']:7.1f} rows/s")
    print(f"ray 1 actor / local: {out['ray1'] / out['local']:.2f}x (goal >= 0.9); with max_in_flight 2: "
          f"{out['ray1x2'] / out['local']:.2f}x")
    print(f"scaling at 2: {out['ray2'] / out['ray1']:.2f}x (goal >= 1.8); at 4: {out['ray4'] / out['ray1']:.2f}x (goal >= 3.2)")
    print(f"after: {_load()}")


if __name__ == "__main__":
    main()

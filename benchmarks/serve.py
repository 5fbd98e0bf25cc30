"""S1/S2: what ``promptweave serve`` costs in front of a model, and that memory updates never
delay a reply.

S1 (overhead). The zero-latency test server (``promptweave.testing.server``, own process, a fixed
reply) is called by one ``httpx.AsyncClient`` at concurrency C, N requests:

- ``direct``: POST /v1/chat/completions to the test server itself;
- ``serve``: the same requests to ``promptweave serve`` (own process, real uvicorn, SQLite store,
  ``openai`` backend pointed at the test server, its default ``lean`` transport unless
  ``--transport`` names another), each naming one of 64 conversations, so every request also
  stores two turns and builds the memory prompt.

Interleaved, best of ``--repeats``. Targets: serve >= 0.5x the direct throughput, added p50
latency <= 5 ms. At concurrency C every request queues behind the others for the CPU, so the p50 at
C is about C / throughput (Little's law) and the added p50 there mostly restates the throughput
ratio; the benchmark also sends ``--serial`` requests one at a time (concurrency 1) to both, whose
p50 difference is the server's own added latency per request.

S2 (updates off the reply path). The test server answers after 500 ms. 8 conversations each send
6 messages one after another through ``promptweave serve``: once with no memory updates
(``session_end`` policy, no session ends), once with an update after every exchange
(``every_n_turns: 2``, the update model a separate runtime on the same slow server), so updates
run while the next replies are made. Target: mean reply latency within 1.2x.

    .venv/bin/python benchmarks/serve.py [--requests 1000] [--concurrency 32] [--repeats 2] [--transport aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from promptweave.testing import serve as test_server  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def promptweave_serve(tmp: Path, backend_url: str, memory: dict[str, Any],
                      transport: str | None = None) -> Iterator[tuple[str, int]]:
    model: dict[str, Any] = {"backend": "openai", "model": "bench", "base_url": backend_url, "cache": False,
                             "max_concurrency": 256, "max_retries": 0, "max_tokens": 16}
    if transport:
        model["options"] = {"transport": transport}
    cfg = {"model": model, "models": {"memory": dict(model)}, "memory": {"update_model": "memory", **memory},
           "store": f"sqlite:///{tmp / f'mem-{time.monotonic_ns()}.db'}", "server": {"keys_env": None, "port": 0}}
    path = tmp / f"serve-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "promptweave", "serve", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("promptweave serve did not start")
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline().decode()
                if line.startswith("READY"):
                    yield line.split()[1], proc.pid
                    return
    finally:
        proc.terminate()
        proc.wait(20)


async def load(base_url: str, n: int, concurrency: int, sessions: int | None) -> tuple[float, list[float]]:
    """(seconds for all, per-request latencies) of n requests at the given concurrency."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        async def one(i: int) -> None:
            body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": f"hello {i}"}],
                                    "max_tokens": 16}
            if sessions:
                body["user"] = f"s{i % sessions}"
            async with sem:
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json=body)
                latencies.append(time.perf_counter() - t0)
            r.raise_for_status()

        await one(-1)  # warm the connection and the server
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0, latencies


async def conversations(base_url: str, n_sessions: int, turns: int) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        async def talk(s: int) -> None:
            for k in range(turns):
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json={
                    "user": f"c{s}", "messages": [{"role": "user", "content": f"turn {k} of {s}"}]})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
        await asyncio.gather(*(talk(s) for s in range(n_sessions)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--serial", type=int, default=300, help="requests sent one at a time, for the added latency")
    ap.add_argument("--transport", default=None, help="serve's openai transport (default: serve's own choice, "
                                                     "lean; aiohttp = through the SDK)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-serve-"))

    with test_server(reply="ok", seed=1) as direct_url, \
            promptweave_serve(tmp, direct_url, {"policy": "session_end", "idle_timeout": None},
                              args.transport) as (serve_url, pid):
        results: dict[str, list[tuple[float, float]]] = {"direct": [], "serve": []}
        client_cpu: dict[str, list[float]] = {"direct": [], "serve": []}
        serve_cpu: list[float] = []
        serial: dict[str, list[float]] = {"direct": [], "serve": []}
        for r in range(args.repeats):
            order = [("direct", direct_url, None), ("serve", serve_url, 64)]
            for name, url, sessions in (order if r % 2 == 0 else order[::-1]):
                c0, s0 = time.process_time(), cpu_seconds(pid)
                secs, lat = asyncio.run(load(url, args.requests, args.concurrency, sessions))
                client_cpu[name].append((time.process_time() - c0) / args.requests * 1000)
                if name == "serve":
                    serve_cpu.append((cpu_seconds(pid) - s0) / args.requests * 1000)
                results[name].append((args.requests / secs, statistics.median(lat) * 1000))
            for name, url, sessions in (order if r % 2 == 0 else order[::-1]):
                serial[name].append(statistics.median(asyncio.run(load(url, args.serial, 1, sessions))[1]) * 1000)
        best = {k: max(v) for k, v in results.items()}
        p50 = {k: min(x[1] for x in v) for k, v in results.items()}
    print(f"S1: {args.requests} requests at concurrency {args.concurrency}, best of {args.repeats}, "
          f"serve's transport {args.transport or 'default'} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'variant':<8} {'req/s':>9} {'p50 ms':>8} {'client CPU ms/req':>18} {'serve CPU ms/req':>17}")
    for k in ("direct", "serve"):
        extra = f"{min(serve_cpu):>17.2f}" if k == "serve" else f"{'-':>17}"
        print(f"{k:<8} {best[k][0]:>9.1f} {p50[k]:>8.2f} {min(client_cpu[k]):>18.2f} {extra}")
    ratio = best["serve"][0] / best["direct"][0]
    added = p50["serve"] - p50["direct"]
    added_serial = min(serial["serve"]) - min(serial["direct"])
    print(f"one at a time ({args.serial} requests): p50 direct {min(serial['direct']):.2f} ms, "
          f"serve {min(serial['serve']):.2f} ms")

    with test_server(reply="ok", seed=1, delay=0.5) as slow_url:
        with promptweave_serve(tmp, slow_url, {"policy": "session_end", "idle_timeout": None}) as (url, _):
            base = asyncio.run(conversations(url, 8, 6))
        with promptweave_serve(tmp, slow_url, {"policy": "every_n_turns", "every_n_turns": 2}) as (url, _):
            upd = asyncio.run(conversations(url, 8, 6))
            stats = httpx.get(url.removesuffix("/v1") + "/healthz").json()
    slow_ratio = statistics.mean(upd) / statistics.mean(base)
    print("S2: 8 conversations x 6 turns, backend 500 ms per call")
    print(f"no updates:       mean {statistics.mean(base) * 1000:.0f} ms, p50 {statistics.median(base) * 1000:.0f} ms")
    print(f"updates running:  mean {statistics.mean(upd) * 1000:.0f} ms, p50 {statistics.median(upd) * 1000:.0f} ms "
          f"({stats['updates_committed']} updates committed during the run)")
    print(f"RESULT serve/direct throughput {ratio:.2f}x (target >= 0.5), added p50 {added:.2f} ms at concurrency "
          f"{args.concurrency} and {added_serial:.2f} ms one at a time (target <= 5), "
          f"serve CPU {min(serve_cpu):.2f} ms/req, "
          f"reply latency with updates {slow_ratio:.2f}x (target <= 1.2)")


if __name__ == "__main__":
    main()

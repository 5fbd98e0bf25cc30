"""S1/S2: what ``promptweave serve`` costs in front of a model, and that memory updates never
delay a reply.

S1 (overhead). The zero-latency test server (``promptweave.testing.server``, own process, a fixed
reply) is called at concurrency C, N requests, by each of two load clients, the same client for
every path: one ``httpx.AsyncClient`` (the http library of the ``openai`` SDK) and one
``aiohttp.ClientSession``. Paths:

- ``direct``: POST /v1/chat/completions to the test server itself;
- ``floor``: through a bare uvicorn app (this file, ``--floor-proxy``: same uvicorn settings as
  serve) that forwards each body to the test server with one pooled aiohttp session and returns
  the answer: no parsing, store or prompt, so the least any such server can add;
- ``serve``: through ``promptweave serve`` (own process, real uvicorn, SQLite store, ``openai``
  backend pointed at the test server, its default ``lean`` transport unless ``--transport`` names
  another), each request naming one of 64 conversations (per client), so every request also stores
  two turns and builds the memory prompt from its session's growing context.

Interleaved, best of ``--repeats``; the CPU seconds of the client and of the floor/serve process
are read per run. Targets: serve >= 0.5x the direct throughput, added p50 latency <= 5 ms. At
concurrency C every request queues behind the others for the CPU, so the p50 at C is about
C / throughput (Little's law) and the added p50 there mostly restates the throughput ratio; the
benchmark also sends ``--serial`` requests one at a time (aiohttp client) to each path, whose p50
difference is the server's own added latency per request.

Why two clients: httpx's pool (httpcore 1.0) checks every pooled connection several times per
request, so its CPU per request depends on how many connections it happens to hold (about 1.3 ms
with ~15, 2.6 ms with 32, on the same server), which any hop that makes requests overlap longer
raises; aiohttp's does not, so with it the server's own CPU decides the serve path.

S2 (updates off the reply path). The test server answers after 500 ms. 8 conversations each send
6 messages one after another through ``promptweave serve``: once with no memory updates
(``session_end`` policy, no session ends), once with an update after every exchange
(``every_n_turns: 2``, the update model a separate runtime on the same slow server), so updates
run while the next replies are made. Target: mean reply latency within 1.2x.

    .venv/bin/python benchmarks/serve.py [--requests 1000] [--concurrency 32] [--repeats 2] [--clients httpx,aiohttp]
        [--transport aiohttp]
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

import aiohttp
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
    with started([sys.executable, "-m", "promptweave", "serve", str(path)]) as (url, pid):
        yield url, pid


def floor_proxy(backend_url: str) -> None:
    """Run the floor: the least a uvicorn server that forwards each chat request to the backend
    can cost (same uvicorn settings as serve, one pooled aiohttp session, no parsing, no store,
    no prompt). Prints ``READY <base_url>`` like serve."""
    import socket

    import uvicorn

    target = backend_url + "/chat/completions"
    session: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
        async with session[0].post(target, data=body, headers={"content-type": "application/json"}) as r:
            answer = await r.read()
            status = r.status
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            print(f"READY http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)

    Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          proxy_headers=False)).run(sockets=[sock])


@contextmanager
def started(cmd: list[str]) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a server process that prints ``READY <url>`` once it listens."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[1:3])} did not start")
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline().decode()
                if line.startswith("READY"):
                    yield line.split()[1], proc.pid
                    return
    finally:
        proc.terminate()
        proc.wait(20)


def body_of(i: int, sessions: int | None, prefix: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": f"hello {i}"}],
                            "max_tokens": 16}
    if sessions:
        body["user"] = f"{prefix}s{i % sessions}"
    return body


async def load_httpx(base_url: str, n: int, concurrency: int, sessions: int | None,
                     prefix: str = "") -> tuple[float, list[float]]:
    """(seconds for all, per-request latencies) of n requests at the given concurrency, through
    one ``httpx.AsyncClient`` (the http library of the ``openai`` SDK)."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        async def one(i: int) -> None:
            body = body_of(i, sessions, prefix)
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


async def load_aiohttp(base_url: str, n: int, concurrency: int, sessions: int | None,
                       prefix: str = "") -> tuple[float, list[float]]:
    """The same through one ``aiohttp.ClientSession`` (connector limit = concurrency)."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    url = base_url + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as client:
        async def one(i: int) -> None:
            body = body_of(i, sessions, prefix)
            async with sem:
                t0 = time.perf_counter()
                async with client.post(url, json=body) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t0)
            r.raise_for_status()

        await one(-1)
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0, latencies


CLIENTS = {"httpx": load_httpx, "aiohttp": load_aiohttp}


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
    ap.add_argument("--clients", default="httpx,aiohttp", help="load clients, comma-separated: httpx, aiohttp")
    ap.add_argument("--transport", default=None, help="serve's openai transport (default: serve's own choice, "
                                                     "lean; aiohttp = through the SDK)")
    ap.add_argument("--floor-proxy", metavar="BACKEND_URL", help=argparse.SUPPRESS)  # the floor's own process
    args = ap.parse_args()
    if args.floor_proxy:
        floor_proxy(args.floor_proxy)
        return
    clients = [c for c in args.clients.split(",") if c]
    if not clients or any(c not in CLIENTS for c in clients):
        ap.error(f"--clients: choose from {', '.join(CLIENTS)}")
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-serve-"))

    with test_server(reply="ok", seed=1) as direct_url, \
            promptweave_serve(tmp, direct_url, {"policy": "session_end", "idle_timeout": None},
                              args.transport) as (serve_url, pid):
        serial: dict[str, list[float]] = {"direct": [], "floor": [], "serve": []}
        with started([sys.executable, str(Path(__file__).resolve()), "--floor-proxy", direct_url]) as (floor_url,
                                                                                                       floor_pid):
            variants = [("direct", direct_url), ("floor", floor_url), ("serve", serve_url)]
            pids = {"floor": floor_pid, "serve": pid}
            # per (client, path), each run's (req/s, p50 ms, client CPU ms/req, server CPU ms/req)
            rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {
                (c, v): [] for c in clients for v, _ in variants}
            for r in range(args.repeats):
                order = [(c, v, u) for c in clients for v, u in variants]
                for client, variant, url in (order if r % 2 == 0 else order[::-1]):
                    server = pids.get(variant)
                    c0, s0 = time.process_time(), cpu_seconds(server) if server else 0.0
                    # each client its own 64 conversations, so both see the same session lengths
                    secs, lat = asyncio.run(CLIENTS[client](url, args.requests, args.concurrency,
                                                            64 if variant == "serve" else None, f"{client}-"))
                    rows[(client, variant)].append((args.requests / secs, statistics.median(lat) * 1000,
                                                    (time.process_time() - c0) / args.requests * 1000,
                                                    (cpu_seconds(server) - s0) / args.requests * 1000
                                                    if server else float("nan")))
                for variant, url in (variants if r % 2 == 0 else variants[::-1]):  # one at a time
                    lat = asyncio.run(load_aiohttp(url, args.serial, 1, 64 if variant == "serve" else None,
                                                   "serial-"))[1]
                    serial[variant].append(statistics.median(lat) * 1000)
    print(f"S1: {args.requests} requests at concurrency {args.concurrency}, best of {args.repeats}, "
          f"serve's transport {args.transport or 'default'} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print("floor: a bare uvicorn app forwarding each request to the test server (one aiohttp session): "
          "the least any such server costs")
    print(f"one at a time ({args.serial} requests, aiohttp client): p50 "
          + ", ".join(f"{v} {min(serial[v]):.2f} ms" for v in serial))
    print(f"{'client':<8} {'variant':<7} {'req/s':>9} {'p50 ms':>8} {'client CPU ms/req':>18} "
          f"{'server CPU ms/req':>18}")
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for (client, variant), runs in rows.items():
        best[(client, variant)] = (max(x[0] for x in runs), min(x[1] for x in runs))
        extra = f"{min(x[3] for x in runs):>18.2f}" if variant != "direct" else f"{'-':>18}"
        print(f"{client:<8} {variant:<7} {best[(client, variant)][0]:>9.1f} {best[(client, variant)][1]:>8.2f} "
              f"{min(x[2] for x in runs):>18.2f} {extra}")
    serve_cpu = min(x[3] for c in clients for x in rows[(c, "serve")])
    parts = []
    for c in clients:
        ratio = best[(c, "serve")][0] / best[(c, "direct")][0]
        added = best[(c, "serve")][1] - best[(c, "direct")][1]
        floor_added = best[(c, "floor")][1] - best[(c, "direct")][1]
        parts.append(f"{c} client: serve/direct throughput {ratio:.2f}x, added p50 {added:.2f} ms at concurrency "
                     f"{args.concurrency} (floor {floor_added:.2f} ms)")
    added_serial = min(serial["serve"]) - min(serial["direct"])

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
    print(f"RESULT {'; '.join(parts)} (targets >= 0.5x, <= 5 ms); added p50 one at a time {added_serial:.2f} ms "
          f"(target <= 5), serve CPU {serve_cpu:.2f} ms/req, reply latency with updates {slow_ratio:.2f}x "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()

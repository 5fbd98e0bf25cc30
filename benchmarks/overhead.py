"""P1/P2: what a promptweave pipeline costs over a hand-written client loop.

Against the zero-latency local server (``promptweave.testing.server``, in its own process), the
same N chat requests at concurrency C go through

- ``raw``: ``openai.AsyncOpenAI()`` + ``asyncio.Semaphore(C)``, nothing else (the SDK's default
  httpx transport), the baseline of the P1 target;
- ``raw-aiohttp``: the same loop on the SDK's aiohttp transport (``DefaultAioHttpClient``);
- ``pipeline``: ``promptweave.run_pipeline`` on a real pipeline file (``openai`` backend, one
  ``generate`` step, cache on in a fresh directory, results/scores/manifest/report written),
  with its default transport (aiohttp when installed);
- ``pipeline-httpx``: the same with ``options: {transport: httpx}``, the raw loop's transport;
- ``langchain``: ``ChatOpenAI.abatch(..., config={"max_concurrency": C})``;

interleaved and repeated (best of ``--repeats``; the order rotates each round). After each
``pipeline`` run the same file runs again:

- ``resume``: every row already finished (P2: target < 5% of the first run, 0 model calls);
- ``cache``: into a new run directory, every request a cache hit.

The server counts the model calls of each variant. Besides wall time the table shows this
process's CPU time per request: on a shared 2-core machine other processes stretch wall times
at random, while the client's CPU time per request is what bounds its throughput.

    .venv/bin/python benchmarks/overhead.py [--rows 2000] [--concurrency 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import openai

from promptweave import run_pipeline
from promptweave.testing import configure, serve, stats

MAX_TOKENS = 32


def prompts(n: int) -> list[str]:
    return [f"Bitte übersetze Satz Nummer {i}: Der Zug nach Hamburg fährt heute später ab." for i in range(n)]


def write_pipeline(tmp: Path, base_url: str, rows: int, concurrency: int, transport: str = "auto") -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps({"source": p}, ensure_ascii=False) + "\n" for p in prompts(rows)),
                    encoding="utf-8")
    (tmp / "echo.yaml").write_text("messages:\n  - role: user\n    content: '{{ source }}'\n", encoding="utf-8")
    cfg = tmp / "bench.yaml"
    cfg.write_text(
        "name: overhead\n"
        f"model: {{backend: openai, model: bench, base_url: '{base_url}', temperature: 0, max_tokens: {MAX_TOKENS},"
        f" max_concurrency: {concurrency}, max_retries: 0, options: {{transport: {transport}}}}}\n"
        f"data: {{path: {data}}}\n"
        "steps:\n  - id: out\n    generate: {template: echo.yaml, parser: text}\n"
        f"concurrency: {concurrency}\n"
        f"output: {tmp / 'runs'}\n"
        f"cache: {tmp / 'cache.sqlite'}\n",
        encoding="utf-8",
    )
    return cfg


async def raw_loop(base_url: str, items: list[str], concurrency: int, aiohttp: bool = False) -> list[str]:
    http = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, **http)  # type: ignore[arg-type]
    sem = asyncio.Semaphore(concurrency)

    async def one(text: str) -> str:
        async with sem:
            resp = await client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=MAX_TOKENS)
            return resp.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one(t) for t in items))
    finally:
        await client.close()


async def langchain_loop(base_url: str, items: list[str], concurrency: int) -> list[str]:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    # a client of this event loop (langchain-openai caches its default one across loops), of
    # the class and limits the raw loop gets from the SDK
    http = openai.DefaultAsyncHttpxClient()
    llm = ChatOpenAI(model="bench", base_url=base_url, api_key="bench", temperature=0,  # type: ignore[arg-type]
                     max_tokens=MAX_TOKENS, max_retries=0, http_async_client=http)
    try:
        out = await llm.abatch([[HumanMessage(t)] for t in items], config={"max_concurrency": concurrency})
    finally:
        await http.aclose()
    return [str(m.content) for m in out]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def _v(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} cores{load}, Python {platform.python_version()}, {platform.system()}; "
            f"openai {_v('openai')}, aiohttp {_v('aiohttp')}, langchain-openai {_v('langchain-openai')}, "
            f"promptweave {_v('promptweave')}")


class Bench:
    def __init__(self, base_url: str, tmp: Path, n: int, c: int) -> None:
        self.base_url, self.tmp, self.n, self.c = base_url, tmp, n, c
        self.items = prompts(n)
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.calls: dict[str, list[int]] = {}
        self.runs = 0

    def record(self, name: str, fn: Callable[[], Any]) -> Any:
        configure(self.base_url, reset=True)
        wall, cpu, result = timed(fn)
        self.wall.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(cpu)
        self.calls.setdefault(name, []).append(stats(self.base_url)["requests"])
        return result

    def run(self, name: str) -> None:
        n, c, url = self.n, self.c, self.base_url
        if name.startswith("raw"):
            out = self.record(name, lambda: asyncio.run(raw_loop(url, self.items, c, aiohttp=name == "raw-aiohttp")))
            assert len(out) == n
        elif name == "langchain":
            out = self.record(name, lambda: asyncio.run(langchain_loop(url, self.items, c)))
            assert len(out) == n
        else:
            self.runs += 1
            tmp = self.tmp / f"run{self.runs}"
            tmp.mkdir()
            cfg = write_pipeline(tmp, url, n, c, transport="httpx" if name == "pipeline-httpx" else "auto")
            summary = self.record(name, lambda: run_pipeline(cfg))
            assert summary.ran == n and summary.errors == 0, summary
            if name == "pipeline":  # P2: the same file again, then into a fresh run directory
                resumed = self.record("resume", lambda: run_pipeline(cfg))
                assert resumed.ran == 0 and resumed.skipped == n
                cached = self.record("cache", lambda: run_pipeline(cfg, run_id="cache-only"))
                assert cached.ran == n and cached.ledger.cache_hits == n
            shutil.rmtree(tmp)

    def best(self, name: str) -> float:
        return min(self.wall[name])

    def best_cpu(self, name: str) -> float:
        return min(self.cpu[name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-langchain", action="store_true")
    args = ap.parse_args()
    n, c = args.rows, args.concurrency
    order = ["raw", "pipeline", "pipeline-httpx"]
    try:
        openai.DefaultAioHttpClient()
        order.insert(1, "raw-aiohttp")
    except (AttributeError, RuntimeError):
        print("aiohttp is not installed (pip install 'openai[aiohttp]'): the pipeline runs on httpx")
    if not args.no_langchain:
        try:
            import langchain_openai  # noqa: F401

            order.append("langchain")
        except ImportError:
            print("langchain-openai is not installed (pip install langchain-openai): no LangChain baseline")
    print(f"machine: {machine()}")
    print(f"{n} requests, concurrency {c}, best of {args.repeats}; server: promptweave.testing.server, own process")
    with serve(seed=0) as base_url, tempfile.TemporaryDirectory(prefix="pw-bench-") as tmpdir:
        bench = Bench(base_url, Path(tmpdir), n, c)
        asyncio.run(raw_loop(base_url, bench.items[:c], c))  # warm imports, server, page cache
        for rep in range(args.repeats):
            k = rep % len(order)
            for name in order[k:] + order[:k]:
                bench.run(name)
            print(f"  round {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in bench.wall.items()), flush=True)
    print()
    print("| variant | best wall s | median wall s | requests/s (best) | client CPU ms/request (best) | model calls (server) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in order + ["resume", "cache"]:
        w = bench.wall[name]
        print(f"| {name} | {min(w):.3f} | {statistics.median(w):.3f} | {n / min(w):,.0f} | "
              f"{1000 * bench.best_cpu(name) / n:.3f} | {'/'.join(map(str, bench.calls[name]))} |")
    print()

    def ratio(a: str, b: str) -> str:
        return f"{bench.best(b) / bench.best(a):.2f}x (CPU {bench.best_cpu(b) / bench.best_cpu(a):.2f}x)"

    parts = [f"pipeline/raw = {ratio('pipeline', 'raw')} (target >= 0.90)",
             f"pipeline-httpx/raw = {ratio('pipeline-httpx', 'raw')}"]
    if "raw-aiohttp" in order:
        parts.append(f"pipeline/raw-aiohttp = {ratio('pipeline', 'raw-aiohttp')}")
    if "langchain" in order:
        parts.append(f"pipeline/langchain = {ratio('pipeline', 'langchain')} (target >= 1.5)")
    share = bench.best("resume") / bench.best("pipeline")
    parts.append(f"resume = {100 * share:.1f}% of the first run, {max(bench.calls['resume'])} model calls "
                 "(target < 5%, 0)")
    parts.append(f"cache-only rerun = {100 * bench.best('cache') / bench.best('pipeline'):.1f}%, "
                 f"{max(bench.calls['cache'])} model calls")
    print("RESULT " + "; ".join(parts))
    ok = (bench.best("raw") / bench.best("pipeline") >= 0.90 and share < 0.05
          and max(bench.calls["resume"]) == 0 and max(bench.calls["cache"]) == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

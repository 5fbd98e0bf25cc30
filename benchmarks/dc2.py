"""DC² wall time on an 8K image against the stand-in vision server delayed 50 ms per call:
all calls as DC² issues them (each node as soon as its children are done) at concurrency 16,
versus the same calls one after another (concurrency 1), measured in one run (after an uncounted
warm-up pass: concurrent, sequential, concurrent again); then the calls a second question on the
same image costs.

    python benchmarks/dc2.py [--delay 0.05] [--concurrency 16] [--budget 400] [--send-side 336]

Target: ratio <= 1/8, calls within the budget, the second question only its answer calls.

Both passes hit the same stand-in server the same way: the benchmark checks that they sent the
same request bodies (a hash of each, kept by the server). Beside the ratio it prints what bounds
the concurrent wall time: the critical-path floor (one description per tree level, the root's
object extraction, the crop questions and the final call, each one delay long), the throughput
floor (calls x delay / concurrency), the in-flight peak and mean as the server counted them, and
the CPU seconds of this process and of the stand-in (which decodes and looks at every image).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from promptweave.models import create_backend  # noqa: E402
from promptweave.models.runtime import ModelRuntime  # noqa: E402
from promptweave.models.spec import ModelConfig  # noqa: E402
from promptweave.testing import stats  # noqa: E402
from promptweave.testing.vision_server import arrivals, control, request_digests, serve_vision  # noqa: E402
from promptweave.vision.answer import answer  # noqa: E402
from promptweave.vision.dc2 import DC2Params, MemoryStore, VisualMemory, build_memory, memory_key  # noqa: E402
from promptweave.vision.images import LoadedImage, load_image  # noqa: E402
from promptweave.vision.prompts import multiple_choice  # noqa: E402
from promptweave.vision.synthetic import make_image  # noqa: E402

Q1 = multiple_choice("What is the colour of the small square in the image?",
                     {"A": "red", "B": "green", "C": "blue", "D": "yellow"})
Q2 = multiple_choice("In which part of the image is the small triangle?",
                     {"A": "top left", "B": "top right", "C": "bottom left", "D": "bottom right"})


@dataclass
class Pass:
    concurrency: int
    wall: float
    cpu: float
    calls: int
    server_cpu: float
    peak: int
    mean_in_flight: float
    digests: list[str]
    memory: VisualMemory
    answer_calls: int


def runtime(url: str, concurrency: int, transport: str) -> ModelRuntime:
    cfg = ModelConfig(backend="openai", model="standin", base_url=url, max_concurrency=concurrency, cache=False,
                      options={"transport": transport})
    return ModelRuntime(cfg, create_backend(cfg))


async def one_pass(url: str, loaded: LoadedImage, params: DC2Params, concurrency: int, transport: str) -> Pass:
    # the decoded pixels, but not the pyramid the image keeps once built: each pass builds it
    loaded = LoadedImage(loaded.image, loaded.name, loaded.sha256)
    rt = runtime(url, concurrency, transport)
    control(url, reset=True)
    t, cpu = time.perf_counter(), time.process_time()
    mem = await build_memory(loaded, rt, params)
    ans = await answer(loaded, mem, Q1, rt, params)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    await rt.aclose()
    assert not mem.errors and ans.error is None, (mem.errors[:1], ans.error)
    server, log = stats(url), arrivals(url)
    span = max(s for _, s in log) - min(a for a, _ in log)
    busy = sum(s - a for a, s in log)
    p = Pass(concurrency, wall, cpu, server["requests"], server["cpu_s"], server["inflight_peak"],
             busy / span, request_digests(url), mem, ans.usage.calls)
    print(f"  concurrency {concurrency:2d}: {wall:5.2f} s wall, {p.calls} calls, in flight at the server: peak "
          f"{p.peak}, mean {p.mean_in_flight:.1f}; CPU: client {cpu:.2f} s, stand-in {p.server_cpu:.2f} s")
    return p


async def second_question(url: str, loaded: LoadedImage, params: DC2Params, transport: str) -> tuple[int, int]:
    rt = runtime(url, 16, transport)
    store = MemoryStore()
    key = memory_key(loaded.sha256, params, rt.identity)
    control(url, reset=True)
    mem, _ = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))
    await answer(loaded, mem, Q1, rt, params)
    first = stats(url)["requests"]
    mem2, reused = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))
    assert reused
    await answer(loaded, mem2, Q2, rt, params)
    await rt.aclose()
    return first, stats(url)["requests"] - first


def depth(mem: VisualMemory) -> int:
    return max(node_id.count(".") for node_id in mem.descriptions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--budget", type=int, default=400)
    p.add_argument("--send-side", type=int, default=336, help="the stand-in sees 336 px; more only costs CPU")
    p.add_argument("--transport", default="auto", help="the openai backend's transport (model.options.transport)")
    args = p.parse_args()
    img, _ = make_image("8K", random.Random(11))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    loaded = load_image(buf.getvalue(), "8K synthetic")
    params = DC2Params(overlap=0.25, budget=args.budget, send_side=args.send_side)
    print(f"transport {args.transport}; image {loaded.size[0]}x{loaded.size[1]}, server delay {args.delay * 1000:.0f} ms, cpus {os.cpu_count()}, "
          f"load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())} (before)")
    with serve_vision(delay=args.delay) as url:
        print("  warm-up (not counted: first imports, connections, threads):")
        asyncio.run(one_pass(url, loaded, params, args.concurrency, args.transport))
        runs: list[Any] = []
        for conc in (args.concurrency, 1, args.concurrency):  # interleaved: the machine's load drifts
            runs.append(asyncio.run(one_pass(url, loaded, params, conc, args.transport)))
        first, second = asyncio.run(second_question(url, loaded, params, args.transport))
    c1, seq, c2 = runs
    mem = c1.memory
    same = sorted(c1.digests) == sorted(seq.digests) == sorted(c2.digests)
    conc = (c1.wall + c2.wall) / 2
    levels = depth(mem) + 1
    asks = 1 if c1.answer_calls > 1 and params.combine != "crops" else 0
    path_calls = levels + 1 + asks + 1  # descriptions, the root's extraction, crop questions, final call
    print(f"tree: {mem.nodes} nodes, {levels} levels ({mem.merged_groups} merged groups), budget hit: "
          f"{mem.budget_hit}")
    print(f"same calls in every pass (request bodies): {'yes' if same else 'NO'}")
    print(f"DC2 at concurrency {args.concurrency}: {conc:.2f} s ({c1.wall:.2f}, {c2.wall:.2f}), {c1.calls} calls")
    print(f"same calls one after another:  {seq.wall:.2f} s, {seq.calls} calls "
          f"({seq.wall / seq.calls * 1000:.1f} ms a call, {args.delay * 1000:.0f} of them the delay)")
    print(f"floors: critical path {path_calls} calls x {args.delay * 1000:.0f} ms = {path_calls * args.delay:.2f} s "
          f"({levels} descriptions, 1 extraction, {asks} crop round, 1 final); throughput {c1.calls} x "
          f"{args.delay * 1000:.0f} ms / {args.concurrency} = {c1.calls * args.delay / args.concurrency:.2f} s")
    ratio = conc / seq.wall
    print(f"ratio concurrent/sequential: {ratio:.3f} (1/{1 / ratio:.1f}); target <= 1/8: "
          f"{'PASS' if ratio <= 1 / 8 and same else 'FAIL'}")
    print(f"calls within budget: {'PASS' if c1.calls <= args.budget else 'FAIL'} ({c1.calls} <= {args.budget})")
    print(f"second question on the same image: {second} calls (first question: {first}); "
          f"answer calls only: {'PASS' if second <= 1 + params.max_crops else 'FAIL'}")
    print(f"load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())} (after)")


if __name__ == "__main__":
    main()

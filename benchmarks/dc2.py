"""DC² wall time on an 8K image against the stand-in vision server delayed 50 ms per call:
all calls as DC² issues them (each node as soon as its children are done) at concurrency 16,
versus the same calls one after another (concurrency 1), measured in one run; then the calls a
second question on the same image costs.

    python benchmarks/dc2.py [--delay 0.05] [--concurrency 16] [--budget 400] [--send-side 336]

Target: ratio <= 1/8, calls within the budget, the second question only its answer calls.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from promptweave.models import create_backend  # noqa: E402
from promptweave.models.runtime import ModelRuntime  # noqa: E402
from promptweave.models.spec import ModelConfig  # noqa: E402
from promptweave.testing import stats  # noqa: E402
from promptweave.testing.vision_server import control, serve_vision  # noqa: E402
from promptweave.vision.answer import answer  # noqa: E402
from promptweave.vision.dc2 import DC2Params, MemoryStore, build_memory, memory_key  # noqa: E402
from promptweave.vision.images import load_image  # noqa: E402
from promptweave.vision.prompts import multiple_choice  # noqa: E402
from promptweave.vision.synthetic import make_image  # noqa: E402

Q1 = multiple_choice("What is the colour of the small square in the image?",
                     {"A": "red", "B": "green", "C": "blue", "D": "yellow"})
Q2 = multiple_choice("In which part of the image is the small triangle?",
                     {"A": "top left", "B": "top right", "C": "bottom left", "D": "bottom right"})


async def one_pass(url: str, loaded: object, params: DC2Params, concurrency: int) -> tuple[float, int, object]:
    cfg = ModelConfig(backend="openai", model="standin", base_url=url, max_concurrency=concurrency, cache=False)
    rt = ModelRuntime(cfg, create_backend(cfg))
    control(url, reset=True)
    t, cpu = time.perf_counter(), time.process_time()
    mem = await build_memory(loaded, rt, params)  # type: ignore[arg-type]
    ans = await answer(loaded, mem, Q1, rt, params)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    await rt.aclose()
    assert not mem.errors and ans.error is None, (mem.errors[:1], ans.error)
    print(f"  concurrency {concurrency}: {wall:.2f} s wall, {cpu:.2f} s client CPU")
    return wall, stats(url)["requests"], mem


async def second_question(url: str, loaded: object, params: DC2Params) -> tuple[int, int]:
    cfg = ModelConfig(backend="openai", model="standin", base_url=url, max_concurrency=16, cache=False)
    rt = ModelRuntime(cfg, create_backend(cfg))
    store = MemoryStore()
    key = memory_key(loaded.sha256, params, rt.identity)  # type: ignore[attr-defined]
    control(url, reset=True)
    mem, _ = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))  # type: ignore[arg-type]
    await answer(loaded, mem, Q1, rt, params)  # type: ignore[arg-type]
    first = stats(url)["requests"]
    mem2, reused = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))  # type: ignore[arg-type]
    assert reused
    await answer(loaded, mem2, Q2, rt, params)  # type: ignore[arg-type]
    await rt.aclose()
    return first, stats(url)["requests"] - first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--budget", type=int, default=400)
    p.add_argument("--send-side", type=int, default=336, help="the stand-in sees 336 px; more only costs CPU")
    args = p.parse_args()
    img, _ = make_image("8K", random.Random(11))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    loaded = load_image(buf.getvalue(), "8K synthetic")
    params = DC2Params(overlap=0.25, budget=args.budget, send_side=args.send_side)
    print(f"image {loaded.size[0]}x{loaded.size[1]}, server delay {args.delay * 1000:.0f} ms, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with serve_vision(delay=args.delay) as url:
        conc, calls_c, mem = asyncio.run(one_pass(url, loaded, params, args.concurrency))
        seq, calls_s, _ = asyncio.run(one_pass(url, loaded, params, 1))
        first, second = asyncio.run(second_question(url, loaded, params))
    print(f"tree: {mem.nodes} nodes ({mem.merged_groups} merged groups), budget {args.budget}, "  # type: ignore[attr-defined]
          f"budget hit: {mem.budget_hit}")  # type: ignore[attr-defined]
    print(f"DC2 at concurrency {args.concurrency}: {conc:.2f} s, {calls_c} calls")
    print(f"same calls one after another:  {seq:.2f} s, {calls_s} calls")
    ratio = conc / seq
    print(f"ratio concurrent/sequential: {ratio:.3f} (1/{1 / ratio:.1f}); target <= 1/8: {'PASS' if ratio <= 1 / 8 else 'FAIL'}")
    print(f"calls within budget: {'PASS' if calls_c <= args.budget else 'FAIL'} ({calls_c} <= {args.budget})")
    print(f"second question on the same image: {second} calls (first question: {first}); "
          f"answer calls only: {'PASS' if second <= 1 + params.max_crops else 'FAIL'}")


if __name__ == "__main__":
    main()

"""The run store's memory and resume cost against holding every record in memory.

A ``results.jsonl`` of N translate-like records (about 1.3 KB each) is written once; then, in
one process, interleaved:

- ``baseline``: what the store did before it kept an index, i.e. parse every line and keep the
  records in a dict (the previous ``RunStore.open``);
- ``index``: ``RunStore.open()`` (the byte-range index), then the resume decision for every key
  (``status``), then ``compact`` of the already clean file (a no-op) — what resuming a finished
  run costs.

Time is one untraced call; memory is tracemalloc's peak of a second call (Python allocations). Prints both and the ratios.

    .venv/bin/python benchmarks/run_store.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from promptweave.pipelines.store import RunStore


def make_record(i: int) -> dict[str, Any]:
    src = f"Satz Nummer {i}: der Zug nach Hamburg fährt heute zwanzig Minuten später ab. " * 3
    hyp = f"Sentence number {i}: the train to Hamburg leaves twenty minutes later today. " * 3
    return {"key": f"r{i:07d}", "index": i, "status": "ok", "fields": {"source": src, "reference": hyp},
            "outputs": {"hyp": {"value": hyp, "raw": hyp, "removed": [], "flags": [],
                                "call": {"key": "0123456789abcdef", "cached": False, "attempts": 1,
                                         "prompt_tokens": 60, "completion_tokens": 40, "finish_reason": "stop"}}},
            "fp": f"{i:016x}"}


def baseline(path: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    with open(path, "rb") as f:
        for raw in f:
            rec = json.loads(raw)
            records[rec["key"]] = rec
    return records


def indexed(run_dir: Path, keys: list[str]) -> int:
    store = RunStore(run_dir)
    store.open()
    todo = sum(1 for k in keys if (e := store.status(k)) is None or not e.ok)
    store.compact(keys)
    return todo


def measure(fn: Any, *args: Any) -> tuple[float, float, Any]:
    """(seconds untraced, peak MiB traced in a second call, result)."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args)
    seconds = time.perf_counter() - t0
    del out
    gc.collect()
    tracemalloc.start()
    out = fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        path = run_dir / "results.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for i in range(args.rows):
                f.write(json.dumps(make_record(i), ensure_ascii=False) + "\n")
        keys = [f"r{i:07d}" for i in range(args.rows)]
        size = path.stat().st_size / 2**20
        b_s, b_mb, records = measure(baseline, path)
        assert len(records) == args.rows
        del records
        i_s, i_mb, todo = measure(indexed, run_dir, keys)
        assert todo == 0
        print(f"rows {args.rows:,}, results.jsonl {size:.1f} MiB")
        print(f"baseline (records in memory): {b_s:6.2f} s  peak {b_mb:8.1f} MiB")
        print(f"index (open+resume+compact):  {i_s:6.2f} s  peak {i_mb:8.1f} MiB")
        print(f"ratio: memory {b_mb / i_mb:.1f}x less, time {b_s / i_s:.2f}x")


if __name__ == "__main__":
    main()

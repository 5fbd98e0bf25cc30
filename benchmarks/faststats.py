"""sacreBLEU's own per-segment statistics vs ``promptweave.evaluators.faststats``, one core.

Usage: ``python benchmarks/faststats.py [--segments 20000] [--rounds 3] [--data scale|wmt22]``

Both paths score the same segments (BLEU 13a and chrF: statistics *and* segment scores, as the
row loop needs them), in interleaved rounds in one process; the best round of each is reported as
microseconds of CPU time per segment, with fast/sacreBLEU as the ratio. Every round also checks that both
paths produced identical statistics and scores. sacreBLEU's tokenizers keep an LRU cache of 65,536
lines; the segments are made unique per round (a suffix), so neither path profits from a warm
cache, as in a run of a million distinct rows.

Target (issue 14): BLEU + chrF together <= 120 us/segment on the scale benchmark's sentences, and
>= 2.5x faster than sacreBLEU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import reference, sentence  # noqa: E402
from promptweave.evaluators.segstats import chunk_stats, metric_spec  # noqa: E402

SPECS = {"BLEU": metric_spec("bleu", "de", "en", {}), "chrF": metric_spec("chrf", "de", "en", {})}


def load(kind: str, n: int) -> tuple[list[str], list[str]]:
    """``n`` (hypothesis, reference) pairs: the scale benchmark's (the echo backend returns the
    source; the reference differs in every fourth word) or WMT22's real outputs, repeated."""
    if kind == "scale":
        return [sentence(i, 1) for i in range(n)], [reference(i) for i in range(n)]
    rows = []
    for f in sorted((ROOT.parent / "shared" / "data" / "wmt22").glob("*.jsonl")):
        if f.name.endswith(("-en.jsonl", ".en-de.jsonl", ".en-cs.jsonl", ".en-ru.jsonl")):
            rows += [json.loads(line) for line in f.open(encoding="utf-8")]
    if not rows:
        sys.exit("no WMT22 files under ../shared/data/wmt22; use --data scale")
    rows = (rows * (n // len(rows) + 1))[:n]
    return [r["hypothesis"] for r in rows], [r["reference"] for r in rows]


def timed(fast: bool, hyps: list[str], refs: list[str]) -> tuple[dict[str, float], list[object]]:
    """Seconds of this process's CPU time per metric (robust to other processes on a shared
    machine; on a quiet one it equals the wall time), and the results."""
    os.environ["PROMPTWEAVE_FASTSTATS"] = "1" if fast else "0"
    out, took = [], {}
    for name, spec in SPECS.items():
        t0 = time.process_time()
        out.append(chunk_stats(spec, hyps, [refs], with_segments=True))
        took[name] = time.process_time() - t0
    return took, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segments", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", choices=("scale", "wmt22"), default="scale")
    args = ap.parse_args()
    hyps, refs = load(args.data, args.segments)
    for spec in SPECS.values():  # build the metrics (imports, tokenizers) outside the timing
        chunk_stats(spec, hyps[:2], [refs[:2]])
    best: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        tag = f" #{r}"  # unique texts per round: no warm tokenizer cache for either path
        h, rf = [x + tag for x in hyps], [x + tag for x in refs]
        slow_t, slow = timed(False, h, rf)
        fast_t, fast = timed(True, h, rf)
        if slow != fast:
            sys.exit("MISMATCH: fast statistics or scores differ from sacreBLEU's")
        for name in SPECS:
            best["sacrebleu", name] = min(best.get(("sacrebleu", name), float("inf")), slow_t[name])
            best["fast", name] = min(best.get(("fast", name), float("inf")), fast_t[name])
    n = len(hyps)
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n} segments ({args.data}), statistics + segment scores, one core, CPU time, "
          f"best of {args.rounds} interleaved rounds, load average {loadavg:.2f}; identical results: yes")
    print(f"  {'':10} {'sacreBLEU':>12} {'faststats':>12} {'ratio':>7}")
    total = {"sacrebleu": 0.0, "fast": 0.0}
    for name in [*SPECS, "together"]:
        if name == "together":
            us = {k: v for k, v in total.items()}
        else:
            us = {k: best[k, name] / n * 1e6 for k in total}
            for k in total:
                total[k] += us[k]
        print(f"  {name:10} {us['sacrebleu']:9.1f} us {us['fast']:9.1f} us {us['fast'] / us['sacrebleu']:7.3f}"
              f"  ({us['sacrebleu'] / us['fast']:.2f}x faster)")
    print(f"RESULT faststats BLEU+chrF {us['fast']:.1f} us/segment (target <= 120), "
          f"{us['sacrebleu'] / us['fast']:.2f}x sacreBLEU's speed (target >= 2.5), identical: yes")


if __name__ == "__main__":
    main()

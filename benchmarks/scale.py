"""A run at 10k / 100k / 1M rows, and ``promptweave eval`` against the ``sacrebleu`` CLI.

Pipeline runs: the scripted backend (echo), one ``translate`` step, BLEU + chrF, no progress bar.
Each size runs in its own process, which prints wall time, row-loop time (``Engine.run``),
finish time (scores, manifest, reports) and peak RSS (the process; its children's, the
statistics workers and report.html's process, separately). The largest size is then resumed in
a fresh process (0 model calls expected).

Eval: the same N hypothesis/reference lines scored by ``sacrebleu REF -i HYP -m bleu chrf`` and
by ``promptweave eval``, each in its own process (wall time, peak RSS from ``wait4``), scores and
signatures compared.

    .venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000] [--eval-sizes 100000 1000000]

Sizes under 100k rows run ``--repeat`` times (5): once in order, the rest just before and just
after the largest size (half each); the run of median wall time stands for the size. This
machine's speed drifts by up to ~1.5x within an hour: a 3-second run sees one moment of it, a
1M-row run averages four minutes, so the small runs are taken on both sides of it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the train to Hamburg leaves twenty minutes later today because of works on the line near "
         "Hanover and passengers are asked to use the regional services").split()


def sentence(i: int, salt: int) -> str:
    """Deterministic, varied sentences (so BLEU and chrF do real work)."""
    n = 8 + (i * 7 + salt) % 17
    return " ".join(WORDS[(i * (k + 3) + salt * k) % len(WORDS)] for k in range(n)) + f" {i}."


def reference(i: int) -> str:
    """A reference close to ``sentence(i, 1)``: every fourth word replaced."""
    words = sentence(i, 1).split()
    return " ".join(WORDS[(i + k) % len(WORDS)] if k % 4 == 3 else w for k, w in enumerate(words))


def write_data(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({"source": sentence(i, 1), "reference": reference(i)}) + "\n")


def one_run(rows: int, work: Path, resume: bool) -> dict[str, float]:
    """In this process: run (or resume) the pipeline of ``rows`` rows under ``work``."""
    sys.path.insert(0, str(ROOT))
    import asyncio

    from promptweave import load_config
    from promptweave.pipelines.engine import Engine, run_dir_for
    from promptweave.pipelines.finish import finish_run

    data, cfg = work / "data.jsonl", work / "pipe.yaml"
    if not resume:
        write_data(data, rows)
        cfg.write_text("name: scale\nmodel: {backend: scripted, options: {default: \"{echo}\"}}\n"
                       f"data: {{path: {data}, src_lang: de, tgt_lang: en}}\n"
                       "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"
                       f"metrics: [bleu, chrf]\ncache: 'off'\nconcurrency: 16\noutput: {work / 'runs'}\n",
                       encoding="utf-8")
    t0 = time.perf_counter()
    loaded = load_config(cfg)
    engine = Engine(loaded, run_dir_for(loaded), progress=False)
    summary = asyncio.run(engine.run())
    t1 = time.perf_counter()
    scores = finish_run(engine, summary)
    t2 = time.perf_counter()
    from promptweave.pipelines.livepage import reap_late

    reap_late(block=True)  # report.html's process, done but not waited for: its peak RSS too
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"load": os.getloadavg()[0], "rows": rows, "wall": t2 - t0, "loop": t1 - t0, "finish": t2 - t1, "rss_gb": me, "workers_rss_gb": kids,
            "calls": summary.ledger.calls, "bleu": scores["metrics"]["bleu"]["corpus"]}


def rss_of(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` under this script's ``--peak`` wrapper, which reports the child's peak RSS."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--peak", "--", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {res.stderr[-800:]}")
    peak = float(res.stderr.strip().splitlines()[-1].split()[-1])
    return seconds, peak, res.stdout


def peak_wrapper(cmd: list[str]) -> None:
    p = subprocess.Popen(cmd)
    _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    # the process and its children (a process pool) each have their own peak; report the larger
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak_rss_gb {max(usage.ru_maxrss, kids) / 2**20:.3f}", file=sys.stderr)
    raise SystemExit(code)


def eval_compare(n: int, work: Path) -> dict[str, object]:
    hyp, ref = work / f"hyp{n}.txt", work / f"ref{n}.txt"
    with open(hyp, "w", encoding="utf-8") as fh, open(ref, "w", encoding="utf-8") as fr:
        for i in range(n):
            fh.write(sentence(i, 1) + "\n")
            fr.write(reference(i) + "\n")
    sb = str(Path(sys.executable).parent / "sacrebleu")
    t_sb, m_sb, out_sb = rss_of([sb, str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-f", "json"])
    t_pw, m_pw, out_pw = rss_of([sys.executable, "-m", "promptweave", "eval", "--hyp", str(hyp), "--ref", str(ref),
                                 "--metrics", "bleu,chrf", "--json"])
    sb_scores = {d["name"].lower().replace("chrf2", "chrf"): (d["score"], d["signature"]) for d in json.loads(out_sb)}
    pw = json.loads(out_pw)
    # the CLI prints scores rounded (BLEU 1 decimal by default, chrF 1): compare at its precision
    pw_scores = {r["metric"]: (round(r["score"], 1), r["signature"]) for r in pw["results"]}
    return {"n": n, "sacrebleu_s": t_sb, "sacrebleu_gb": m_sb, "eval_s": t_pw, "eval_gb": m_pw,
            "sacrebleu": sb_scores, "promptweave": pw_scores}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--peak":
        return peak_wrapper(sys.argv[3:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--eval-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--one", type=int)
    ap.add_argument("--work")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-resume", action="store_true", help="skip resuming the largest run")
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs of each size under 100k rows (the median is compared), the repeats on both "
                         "sides of the largest size: a few seconds' run sees one moment of a machine whose "
                         "speed drifts, a 1M-row run averages minutes")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, Path(args.work), args.resume)))
        return
    # the package's bytecode, as an installed package has it: with PYTHONDONTWRITEBYTECODE set
    # (as on CI machines) every size's process would otherwise compile the modules it imports
    # during the run (~0.1-0.2 s, a fixed cost that is the environment's, not the run's)
    compileall.compile_dir(str(ROOT / "promptweave"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="pw-scale-") as tmp:
        runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.sizes}
        # the small sizes' repeats on both sides of the largest size, whose run averages minutes
        small, rest = [n for n in args.sizes if n < 100_000], max(0, args.repeat - 1)
        largest = max(args.sizes, default=0)
        order: list[int] = []
        for n in args.sizes:
            if n == largest and n >= 100_000:
                order += [m for m in small for _ in range(rest // 2)] + [n] + \
                         [m for m in small for _ in range(rest - rest // 2)]
            else:
                order.append(n)
        if largest < 100_000:
            order += [m for m in small for _ in range(rest)]
        for k, n in enumerate(order):
            work = Path(tmp) / f"run{n}-{k}"
            work.mkdir()
            out = subprocess.run([sys.executable, __file__, "--one", str(n), "--work", str(work)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r["work"] = str(work)
            runs[n].append(r)
            print(f"{n:>9} rows: wall {r['wall']:7.1f}s  row loop {r['loop']:7.1f}s  finish {r['finish']:6.1f}s "
                  f"({r['finish'] / r['loop']:.2f}x loop)  {1e6 * r['wall'] / n:6.1f} µs/row  "
                  f"peak RSS {r['rss_gb']:.2f} GB (child processes {r['workers_rss_gb']:.2f} GB)  "
                  f"load average {r['load']:.2f}", flush=True)
        # each size's run of median wall time
        results = [sorted(runs[n], key=lambda x: x["wall"])[(len(runs[n]) - 1) // 2] for n in args.sizes if runs[n]]
        for x in results:
            if len(runs[x["rows"]]) > 1:
                print(f"{x['rows']:>9} rows: median of {len(runs[x['rows']])} runs {1e6 * x['wall'] / x['rows']:.1f} µs/row "
                      f"(finish {x['finish']:.2f}s, {x['finish'] / x['loop']:.2f}x loop)")
        if results and not args.no_resume:
            big = results[-1]
            work = Path(big["work"])
            out = subprocess.run([sys.executable, __file__, "--one", str(big["rows"]), "--work", str(work), "--resume"],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"resume of the {big['rows']}-row run: {r['wall']:.1f}s = {r['wall'] / big['wall']:.1%} of the first "
                  f"run (target < 5%), {r['calls']} model calls (target 0)", flush=True)
        if results:
            per_row = [x["wall"] / x["rows"] for x in results]
            print(f"time per row, largest / smallest size: {max(per_row) / min(per_row):.2f}x (target ≤ 1.2x)")
            for x in results:
                if x["rows"] >= 100_000:
                    print(f"finish / row loop at {x['rows']}: {x['finish'] / x['loop']:.2f}x (target ≤ 0.25x)")
            by = {x["rows"]: x for x in results}
            if 100_000 in by and 1_000_000 in by:
                print(f"peak RSS at 1M: {by[1_000_000]['rss_gb']:.2f} GB (target ≤ 1.5); growth 100k→1M "
                      f"{by[1_000_000]['rss_gb'] - by[100_000]['rss_gb']:.2f} GB (target ≤ 0.3)")
        for n in args.eval_sizes:
            work = Path(tmp) / f"eval{n}"
            work.mkdir()
            e = eval_compare(n, work)
            same = e["sacrebleu"] == e["promptweave"]
            print(f"eval {n:>9} lines: sacrebleu CLI {e['sacrebleu_s']:.1f}s {e['sacrebleu_gb']:.2f} GB; promptweave eval "
                  f"{e['eval_s']:.1f}s {e['eval_gb']:.2f} GB; speed {e['sacrebleu_s'] / e['eval_s']:.2f}x (target ≥ 1.5x); "
                  f"scores and signatures identical: {same}", flush=True)
            if not same:
                print(f"  sacrebleu {e['sacrebleu']}\n  promptweave {e['promptweave']}")


if __name__ == "__main__":
    main()

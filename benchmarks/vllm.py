"""P4: tokens/s of a translation pipeline on ``backend: vllm`` against ``vllm.LLM.chat`` called directly.

One in-process engine serves both variants (the backend's shared engine; the raw loop calls the
same ``LLM`` object), on the same ``--rows`` prompts, temperature 0, the same ``max_tokens``:

- ``raw``: one ``llm.chat(conversations, SamplingParams(...))`` call with every prompt;
- ``pipeline``: ``promptweave.run_pipeline`` on a pipeline file with a ``translate`` step (the
  ``tsp`` prompt, de -> en), ``backend: vllm``, cache off, into a fresh run directory: config,
  data, batching, results.jsonl, manifest and report, end to end.

A warm-up pipeline run (off the clock) starts the engine and records the conversations and
sampling parameters our backend hands to ``LLM.chat``; the raw variant sends exactly those.
Then the variants alternate, the order rotating each round; best and median of ``--repeats``.
Tokens are the completion tokens vLLM reports. At temperature 0 the texts should agree; vLLM's
bf16 batches are not bit-reproducible, so the script counts the rows that differ from raw, and
those that differ between two raw rounds, instead of demanding identity. It also times the
engine call inside each pipeline run: the rest is promptweave's share (config, data, prompts,
batching, results, report). Exit 0 when the best-of ratio is >= 0.95, 1 when it is not, 2 when
vLLM is missing.

    python benchmarks/vllm.py [--rows 32] [--max-tokens 48] [--repeats 3] [--model default]

``--model default`` is the embedded model converted for vLLM (``promptweave.models.vllm_model``);
any Hugging Face id or folder works. On a CPU the backend's CPU defaults apply (eager mode, half the
free memory); ``--rows`` defaults to 32 there and to 512 with a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this file is named vllm.py: drop its folder from the path so that "import vllm" finds vLLM
# (also in the engine process vLLM spawns, which re-runs this module with the parent's sys.path)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SENTENCES = [
    "Der Zug nach Hamburg fährt heute später ab.",
    "Bitte schließen Sie das Fenster.",
    "Die Bibliothek ist am Sonntag geschlossen.",
    "Mein Bruder arbeitet in einem Krankenhaus.",
    "Wo ist der nächste Bahnhof?",
    "Das Wetter wird morgen sonnig.",
    "Wir haben das Projekt gestern abgeschlossen.",
    "Der Arzt empfiehlt viel Wasser.",
    "Die Kinder spielen im Park.",
    "Ich habe meinen Schlüssel vergessen.",
    "Das Museum zeigt eine neue Ausstellung.",
    "Unsere Firma sucht einen Entwickler.",
    "Der Flug wurde wegen des Sturms gestrichen.",
    "Sie liest jeden Abend ein Buch.",
    "Die Preise sind gestiegen.",
    "Bitte senden Sie mir die Rechnung.",
]


def sources(rows: int) -> list[str]:
    # numbered so that no two prompts are the same (no free ride on vLLM's prefix cache)
    return [f"{SENTENCES[i % len(SENTENCES)]} ({i + 1})" for i in range(rows)]


def write_pipeline(tmp: Path, model: str, options: dict[str, Any], rows: int, max_tokens: int) -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps({"source": s}, ensure_ascii=False) + "\n" for s in sources(rows)),
                    encoding="utf-8")
    cfg = tmp / "vllm-bench.yaml"
    model_block = {"backend": "vllm", "model": model, "temperature": 0, "max_tokens": max_tokens,
                   "options": options}
    cfg.write_text(
        "name: vllm-bench\n"
        f"model: {json.dumps(model_block)}\n"
        f"data: {{path: {json.dumps(str(data))}, src_lang: de, tgt_lang: en}}\n"
        "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"
        f"concurrency: {rows}\n"  # every row in flight: the backend batches what the pipeline sends
        f"output: {json.dumps(str(tmp / 'runs'))}\n"
        "cache: 'off'\n", encoding="utf-8")
    return cfg


def pipeline_run(tmp: Path, model: str, options: dict[str, Any], rows: int, max_tokens: int) -> tuple[list[str], int]:
    from promptweave import run_pipeline

    tmp.mkdir()
    summary = run_pipeline(write_pipeline(tmp, model, options, rows, max_tokens))
    (run_dir,) = (tmp / "runs" / "vllm-bench").iterdir()
    recs = [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    if summary.errors:
        errors = sorted({r["error"]["message"] for r in recs if r.get("error")})
        raise SystemExit(f"the pipeline run had {summary.errors} failed rows: {errors[:3]}")
    recs.sort(key=lambda r: int(r["index"]))
    return [r["outputs"]["hyp"]["raw"] for r in recs], summary.ledger.completion_tokens


def raw_run(llm: Any, conversations: list[list[dict[str, Any]]], sampling: Any) -> tuple[list[str], int]:
    outs = llm.chat(conversations, sampling, use_tqdm=False)
    return [o.outputs[0].text for o in outs], sum(len(o.outputs[0].token_ids) for o in outs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="'default' (the embedded model), a HF id or folder")
    ap.add_argument("--rows", type=int, default=None, help="prompts per run (default 32 on CPU, 512 on GPU)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-model-len", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the table, not the engine's INFO lines
    try:
        import vllm
    except ImportError:
        print("vllm is not installed: nothing measured (install it with: python -m promptweave.models.vllm_install)")
        return 2
    from promptweave.models import vllm_engine
    from promptweave.models.vllm_engine import VLLMChatModel, distribution, has_gpu

    gpu = has_gpu()
    rows = args.rows or (512 if gpu else 32)
    options = {"dtype": "bfloat16", "max_model_len": args.max_model_len, "seed": 0}
    dist = distribution() or ("vllm", getattr(vllm, "__version__", "?"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {'GPU' if gpu else 'CPU only'}, load average "
          f"{os.getloadavg()[0]:.1f}; {dist[0]} {dist[1]}; model {args.model}; {rows} prompts, max_tokens "
          f"{args.max_tokens}, best of {args.repeats}", flush=True)

    # the warm-up records what our backend sends to LLM.chat; every pipeline run, how long the
    # engine call took (two perf_counter calls: what is left of a run is promptweave's share)
    sent: list[tuple[list[Any], Any]] = []
    in_engine: list[float] = []
    original = VLLMChatModel._chat

    def spy(self: VLLMChatModel, conversations: list[Any], params: Any) -> list[Any]:
        sent.append((conversations, params))
        t = time.perf_counter()
        try:
            return original(self, conversations, params)
        finally:
            in_engine.append(time.perf_counter() - t)

    VLLMChatModel._chat = spy  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="pw-vllm-") as tmpdir:
        t0 = time.perf_counter()
        pipeline_run(Path(tmpdir) / "warmup", args.model, options, rows, args.max_tokens)
        print(f"warm-up (engine start included): {time.perf_counter() - t0:.1f}s; the pipeline's LLM.chat "
              f"batches: {[len(c) for c, _ in sent]}", flush=True)
        (shared,) = vllm_engine._shared.values()  # one engine in this process
        llm = shared.executor.submit(shared.llm).result()
        # in the order the pipeline sent them (the same batch, so the same numerics); ``row_order``
        # maps them back to row order, the order of the pipeline's results
        srcs = sources(rows)
        conversations = [conv for batch, _ in sent for conv in batch]
        row_order = sorted(range(len(conversations)), key=lambda k: next(
            i for i, s in enumerate(srcs) if str(conversations[k][-1]["content"]).endswith(s)))
        sampling = vllm.SamplingParams(**sent[0][1].sampling_kwargs())
        warmup_batches = len(sent)
        outside: list[float] = []  # per pipeline run: wall time less the time inside LLM.chat

        times: dict[str, list[float]] = {"raw": [], "pipeline": []}
        tokens: dict[str, int] = {}
        outputs: dict[str, list[list[str]]] = {"raw": [], "pipeline": []}  # per round
        for rep in range(args.repeats):
            order = list(times) if rep % 2 == 0 else list(reversed(times))
            for name in order:
                t0 = time.perf_counter()
                if name == "raw":
                    texts, tokens[name] = raw_run(llm, conversations, sampling)
                    texts = [texts[k] for k in row_order]
                else:
                    del in_engine[:]
                    texts, tokens[name] = pipeline_run(Path(tmpdir) / f"run{rep}", args.model, options,
                                                       rows, args.max_tokens)
                outputs[name].append(texts)
                times[name].append(time.perf_counter() - t0)
                if name == "pipeline":
                    outside.append(times[name][-1] - sum(in_engine))
            print(f"  round {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
                  + f" (load {os.getloadavg()[0]:.1f})", flush=True)
        engines = len(vllm_engine._shared)
        batches = [len(c) for c, _ in sent[warmup_batches:]]
    VLLMChatModel._chat = original  # type: ignore[method-assign]
    vllm_engine.shutdown_all()
    # rows whose text differs, pipeline vs raw in the same round, and raw between rounds: vLLM's
    # bf16 batches are not bit-reproducible, so a row may flip a token even between two raw calls
    differ = max(_diff(r, p) for r, p in zip(outputs["raw"], outputs["pipeline"]))
    raw_differ = max((_diff(outputs["raw"][0], r) for r in outputs["raw"][1:]), default=0)
    outside_share = statistics.median(o / t for o, t in zip(outside, times["pipeline"]))
    # the ratio if the engine call took as long inside the pipeline as the raw call did: on a
    # loaded machine the engine's own time swings more than promptweave's share of a run
    equalized = statistics.median(times["raw"]) / (statistics.median(times["raw"]) + statistics.median(outside))
    print()
    print("| variant | completion tokens | best s | median s | tokens/s (best) | tokens/s (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {tokens[name]} | {min(ts):.2f} | {statistics.median(ts):.2f} | "
              f"{tokens[name] / min(ts):.1f} | {tokens[name] / statistics.median(ts):.1f} |")
    best = (tokens["pipeline"] / min(times["pipeline"])) / (tokens["raw"] / min(times["raw"]))
    median = ((tokens["pipeline"] / statistics.median(times["pipeline"]))
              / (tokens["raw"] / statistics.median(times["raw"])))
    print(f"\npipeline runs: LLM.chat batches {batches}; outside LLM.chat (config, data, prompts, batching, "
          f"results, report): best {min(outside):.2f}s, median {statistics.median(outside):.2f}s")
    print()
    print(f"RESULT pipeline/raw = {best:.3f}x tokens/s (best), {median:.3f}x (median) (P4 target >= 0.95); "
          f"outside LLM.chat {outside_share:.1%} of a pipeline run (median), {equalized:.3f}x with the engine "
          f"time equalized; rows differing from raw: {differ}/{rows} "
          f"(raw between rounds: {raw_differ}/{rows}); engines in the process: {engines}; load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0 if engines == 1 and best >= 0.95 else 1


def _diff(a: list[str], b: list[str]) -> int:
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


if __name__ == "__main__":
    sys.exit(main())

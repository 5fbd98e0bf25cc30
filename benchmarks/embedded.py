"""P3: tokens/s of the embedded ``llamacpp`` backend against llama-cpp-python called directly.

The same 20 translation prompts, temperature 0, the same ``max_tokens``, no cache, the same
GGUF (``embedded.default_model_path()``), ``n_ctx`` and thread count, go through

- ``raw``: ``llama_cpp.Llama(...).create_chat_completion`` in a plain loop;
- ``runtime``: ``ModelRuntime(cfg, create(ModelConfig(backend="llamacpp")))``, i.e. the backend
  with everything the runtime adds (worker thread, timeout, retries, ledger);
- ``pipeline``: ``promptweave.run_pipeline`` on a pipeline file with the same prompts
  (``generate`` step, ``cache: off``), results, manifest and report written;

interleaved, best of ``--repeats``. Models load before the clock starts. Tokens are the
completion tokens each call reports; at temperature 0 all three must produce the same text.

    .venv/bin/python benchmarks/embedded.py [--max-tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from promptweave import run_pipeline
from promptweave.models import Message, ModelConfig
from promptweave.models.embedded import default_model_path
from promptweave.models.llamacpp import create
from promptweave.models.runtime import ModelRuntime

SYSTEM = "You are a professional translator. Answer with the translation only."
SOURCES = [
    "Der Zug nach Hamburg fährt heute zwanzig Minuten später ab.",
    "Bitte schließen Sie das Fenster, bevor Sie das Büro verlassen.",
    "Die Bibliothek ist am Sonntag geschlossen.",
    "Mein Bruder arbeitet seit drei Jahren in einem Krankenhaus.",
    "Können Sie mir sagen, wo der nächste Bahnhof ist?",
    "Das Wetter wird morgen sonnig und warm.",
    "Wir haben das Projekt gestern erfolgreich abgeschlossen.",
    "Der Arzt empfiehlt, jeden Tag viel Wasser zu trinken.",
    "Die Kinder spielen nach der Schule im Park.",
    "Ich habe meinen Schlüssel im Auto vergessen.",
    "Das Museum zeigt eine neue Ausstellung über moderne Kunst.",
    "Unsere Firma sucht einen erfahrenen Softwareentwickler.",
    "Der Flug nach Berlin wurde wegen des Sturms gestrichen.",
    "Sie liest jeden Abend ein Kapitel aus ihrem Lieblingsbuch.",
    "Die Preise für Lebensmittel sind im letzten Jahr gestiegen.",
    "Bitte senden Sie mir die Rechnung per E-Mail.",
    "Das Restaurant an der Ecke serviert ausgezeichnete Fischgerichte.",
    "Der Bürgermeister eröffnete die neue Brücke am Montag.",
    "Viele Studenten lernen in der Bibliothek für ihre Prüfungen.",
    "Der Techniker repariert die Heizung am Donnerstag.",
]


def messages(source: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Translate into English:\n{source}"}]


def run_raw(llm: Any, max_tokens: int) -> tuple[list[str], int]:
    texts, tokens = [], 0
    for source in SOURCES:
        resp = llm.create_chat_completion(messages=messages(source), temperature=0, max_tokens=max_tokens)
        texts.append(resp["choices"][0]["message"]["content"] or "")
        tokens += resp["usage"]["completion_tokens"]
    return texts, tokens


async def run_runtime(cfg: ModelConfig) -> tuple[list[str], int]:
    runtime = ModelRuntime(cfg, create(cfg))
    texts, tokens = [], 0
    for source in SOURCES:
        res = await runtime.chat([Message.from_dict(m) for m in messages(source)])
        assert res.ok, res.error
        texts.append(res.text or "")
        tokens += res.completion_tokens
    await runtime.aclose()
    return texts, tokens


def write_pipeline(tmp: Path, max_tokens: int, n_threads: int) -> Path:
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps({"source": s}, ensure_ascii=False) + "\n" for s in SOURCES), encoding="utf-8")
    (tmp / "mt.yaml").write_text(
        "messages:\n"
        f"  - role: system\n    content: {json.dumps(SYSTEM)}\n"
        "  - role: user\n    content: \"Translate into English:\\n{{ source }}\"\n", encoding="utf-8")
    cfg = tmp / "embedded.yaml"
    cfg.write_text(
        "name: embedded-bench\n"
        f"model: {{backend: llamacpp, model: default, temperature: 0, max_tokens: {max_tokens}, max_concurrency: 1,"
        f" options: {{n_threads: {n_threads}}}}}\n"
        f"data: {{path: {data}}}\n"
        "steps:\n  - id: out\n    generate: {template: mt.yaml, parser: text}\n"
        "concurrency: 1\n"
        f"output: {tmp / 'runs'}\n"
        "cache: 'off'\n", encoding="utf-8")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import llama_cpp

    n_threads = os.cpu_count() or 1
    path = default_model_path()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; llama-cpp-python "
          f"{llama_cpp.__version__}; model {path.name}; {len(SOURCES)} prompts, max_tokens {args.max_tokens}, "
          f"n_threads {n_threads}, best of {args.repeats}")
    from promptweave.models.llamacpp import model_defaults
    from promptweave.models.llamacpp_probe import resolve_extra_bufts

    with model_defaults(resolve_extra_bufts("auto", path)):  # the backend's load settings (AMX CPUs crash without)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=4096, n_threads=n_threads, verbose=False)
    cfg = ModelConfig(backend="llamacpp", model="default", temperature=0, max_tokens=args.max_tokens, cache=False,
                      max_concurrency=1, options={"n_threads": n_threads})
    asyncio.run(run_runtime(cfg.model_copy(update={"max_tokens": 1})))  # load the shared model, off the clock
    times: dict[str, list[float]] = {"raw": [], "runtime": [], "pipeline": []}
    tokens: dict[str, int] = {}
    outputs: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="pw-embedded-") as tmpdir:
        for rep in range(args.repeats):
            order = list(times)
            order = order[rep % 3:] + order[: rep % 3]
            for name in order:
                t0 = time.perf_counter()
                if name == "raw":
                    outputs[name], tokens[name] = run_raw(llm, args.max_tokens)
                elif name == "runtime":
                    outputs[name], tokens[name] = asyncio.run(run_runtime(cfg))
                else:
                    tmp = Path(tmpdir) / f"run{rep}"
                    tmp.mkdir()
                    summary = run_pipeline(write_pipeline(tmp, args.max_tokens, n_threads))
                    assert summary.errors == 0
                    (run_dir,) = (tmp / "runs" / "embedded-bench").iterdir()
                    recs = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
                    outputs[name] = [r["outputs"]["out"]["raw"] for r in recs]
                    tokens[name] = summary.ledger.completion_tokens
                times[name].append(time.perf_counter() - t0)
            print(f"  round {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    same = outputs["raw"] == outputs["runtime"] == outputs["pipeline"]
    print()
    print("| variant | completion tokens | best s | median s | tokens/s (best) |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {tokens[name]} | {min(ts):.2f} | {statistics.median(ts):.2f} | {tokens[name] / min(ts):.1f} |")
    print()
    rate = {k: tokens[k] / min(v) for k, v in times.items()}
    print(f"RESULT runtime/raw = {rate['runtime'] / rate['raw']:.2f}x tokens/s; pipeline/raw = "
          f"{rate['pipeline'] / rate['raw']:.2f}x (target >= 0.90); identical outputs: {same}")
    return 0 if same and rate["runtime"] / rate["raw"] >= 0.90 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Real runs for the report tests: the WMT22 zh-en MQM file (five systems, human MQM scores)
through a pipeline with a GEMBA-MQM judge (error spans), a DA judge and a translate step whose
Chinese replies raise the wrong_language flag, all against the scripted backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptweave import run_pipeline

WMT22 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wmt" / "wmt22_zhen_mqm.dev.jsonl"
SYSTEMS = ["JDExploreAcademy", "Lan-Bridge", "Online-W", "M2M100_1.2B-B4", "comet_bestmbr"]

# the judge's replies quote the first word of the translation as a major error and the last as a
# minor one; translations starting with "But" get an unparsable reply (a recorded parse failure)
RULES = [
    {"match": r"translation:\n```But ", "reply": "I cannot judge this one."},
    {"match": r"(?s)translation:\n```(\w+)\b.*?(\w+)\W*```\n\nBased", "reply":
     'Critical:\nno-error\nMajor:\naccuracy/mistranslation - "\\1"\nMinor:\nfluency/grammar - "\\2"'},
    {"match": r"(?s)translation:\n```(\w+)", "reply": 'Critical:\nno-error\nMajor:\nno-error\nMinor:\nstyle/awkward - "\\1"'},
    {"match": r'translation: "The ', "reply": "85"},
    {"match": r'translation: "[A-M]', "reply": "70"},
    {"match": r"Score: $", "reply": "55"},
]


def need_wmt() -> Path:
    if not WMT22.exists():
        pytest.skip(f"needs {WMT22} (the shared WMT data beside the repository)")
    return WMT22


def wmt_run(tmp: Path, items: int = 30, metrics: str = "[bleu, chrf]") -> Path:
    """Run the pipeline over the first ``items`` source segments (x5 systems); returns the run dir."""
    data = need_wmt()
    cfg = tmp / "wmt.yaml"
    cfg.write_text(f"""
name: wmt22-judges
model: {{backend: scripted, model: judge, price: {{input: 0.5, output: 1.5}}, options: {{rules: {json.dumps(RULES)}, default: '50'}}}}
models:
  mt: {{backend: scripted, model: mt, options: {{rules: [{{match: '？', reply: 'An English question?'}}], default: '这是一个中文句子。'}}}}
data: {{path: {data}, key: id, explode: translations, src_lang: zh, tgt_lang: en, limit: {items}}}
steps:
  - id: mqm
    mqm: {{method: gemba_mqm, translation: hypothesis, on_parse_error: missing}}
  - id: da
    da: {{translation: hypothesis}}
  - id: mt
    model: mt
    translate: {{prompt: tsp}}
metrics: {metrics}
scoring: {{hypothesis: hypothesis, group_by: system, human: mqm_score}}
output: {tmp / 'runs'}
""", encoding="utf-8")
    summary = run_pipeline(cfg, progress=False)
    return Path(summary.run_dir)


def scale_run(src: Path, dst: Path, rows: int) -> Path:
    """A copy of run ``src`` with its rows repeated (new keys and items) up to ``rows`` rows:
    the report of a large run, built from a real run's records."""
    dst.mkdir(parents=True)
    records = [json.loads(x) for x in (src / "results.jsonl").read_text(encoding="utf-8").splitlines() if x]
    scores: dict[str, Any] = json.loads((src / "scores.json").read_text(encoding="utf-8"))
    segs = scores["segments"]
    out, new_segs = [], {}
    for k in range(rows):
        rec = json.loads(json.dumps(records[k % len(records)]))
        rep = k // len(records)
        old = rec["key"]
        rec["key"], rec["index"] = f"{old}#{rep}", k
        rec["fields"]["item"] = f"{rec['fields'].get('item')}#{rep}"
        out.append(rec)
        if old in segs:
            new_segs[rec["key"]] = segs[old]
    scores["segments"] = new_segs
    (dst / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    (dst / "scores.json").write_text(json.dumps(scores), encoding="utf-8")
    (dst / "manifest.json").write_text((src / "manifest.json").read_text(encoding="utf-8"), encoding="utf-8")
    return dst

"""The translate step: the explicit ``cot`` option, ``cleanup: false`` that still reports what
cleanup would change, and cot-one's step-by-step demonstrations; through run_pipeline on the
scripted backend. The CoT extraction is checked on the paper's own recorded replies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptweave import run_pipeline
from promptweave.errors import ConfigError
from promptweave.pipelines.steps.textclean import clean_translation, final_sentence
from tests.helpers import read_jsonl, scripted_pipeline, write_jsonl

COT = json.loads((Path(__file__).parent / "fixtures" / "chatgpt4mt_cot.json").read_text(encoding="utf-8"))


def outputs(cfg: Path) -> list[dict]:
    (d,) = list((cfg.parent / "runs" / "scripted").iterdir())
    return [r["outputs"]["hyp"] for r in read_jsonl(d / "results.jsonl")]


def pipeline(tmp: Path, reply: str, translate: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = scripted_pipeline(tmp, rows=1, reply=reply)
    cfg.write_text(cfg.read_text().replace("translate: {prompt: tsp}", f"translate: {translate}"))
    return cfg


@pytest.mark.parametrize("lp", ["ende", "enzh"])
def test_final_sentence_matches_the_papers_extraction_on_its_1shot_cot_replies(lp):
    items = COT["items"][lp]
    got = [clean_translation(final_sentence(it["reply"])[0])[0] for it in items]
    assert got == [it["final"] for it in items]  # 20 of 20 per pair


def test_cot_is_explicit(tmp_path):
    reply = "1. Das Haus - The house 2. ist rot - is red. The complete sentence in English is: The house is red."
    cfg = pipeline(tmp_path, reply, "{prompt: tsp, cot: true}")
    run_pipeline(cfg)
    (out,) = outputs(cfg)
    assert out["value"] == "The house is red." and out["removed"] == ["reasoning"]
    # no cot: a reply that merely contains "Translation:" is not cut (no more heuristic)
    cfg = pipeline(tmp_path / "b", "Translation: The house is red.", "{prompt: cot-zero, cot: false, cleanup: false}")
    run_pipeline(cfg)
    assert outputs(cfg)[0]["value"] == "Translation: The house is red."


def test_cleanup_false_keeps_the_reply_and_reports_what_would_change(tmp_path):
    cfg = pipeline(tmp_path, 'Here is the translation: "The house is red."', "{prompt: tsp, cleanup: false}")
    run_pipeline(cfg)
    (out,) = outputs(cfg)
    assert out["value"] == 'Here is the translation: "The house is red."' and out["removed"] == []
    assert out["cleanup_would_change"] == ["preamble", "quotes"] and out["cleaned"] == "The house is red."


def test_cot_one_needs_steps_in_its_demonstrations(tmp_path):
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"source": "Es regnet.", "reference": "It rains."}])
    cfg = pipeline(tmp_path, "x", f"{{prompt: cot-one, examples: {{path: {dev}, k: 1}}}}")
    with pytest.raises(ConfigError, match="steps"):
        run_pipeline(cfg)
    write_jsonl(dev, [{"source": "Es regnet.", "reference": "It rains.", "steps": ["Es regnet - It rains"]}])
    cfg = pipeline(tmp_path / "b", "{echo}", f"{{prompt: cot-one, examples: {{path: {dev}, k: 1}}}}")
    run_pipeline(cfg)
    (out,) = outputs(cfg)
    assert "1. Es regnet - It rains\nThe complete sentence in English is: It rains.\n" in out["raw"]

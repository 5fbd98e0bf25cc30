"""The ``dialogue`` step and the MSC memory pipeline, on the scripted backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptweave import run_pipeline
from tests.helpers import REPO, read_jsonl, write_jsonl

EPISODE = {
    "previous_dialogs": [
        {"dialog": [{"text": "I am Ada and I keep bees."}, {"text": "Bees, how lovely."}]},
        {"dialog": [{"text": "I moved to Lyon."}, {"text": "Lyon is nice."}]},
    ],
    "dialog": [{"id": "Speaker 1", "text": "Guess what, my bees swarmed."},
               {"id": "Speaker 2", "text": "Oh no, your bees in Lyon?"},
               {"id": "Speaker 1", "text": "Yes, all of them."},
               {"id": "Speaker 2", "text": "Did you catch them?"}],
}
RULES = [
    # updates: name from session 1, city from session 2 (memory carried over between them)
    {"match": r"(?s)\[Previous Memory\] none\n\[Dialogue Context\].*I am (\w+) and I keep (\w+).*\[Updated Memory\]$",
     "reply": r"Updated Memory: User is \1. User keeps \2."},
    {"match": r"(?s)\[Previous Memory\] ([^\n]*)\n\[Dialogue Context\].*moved to (\w+).*\[Updated Memory\]$", "reply": r"\1 User lives in \2."},
    # replies: say which memory and how many context turns the prompt held
    {"match": r"(?s)\[Previous Memory\] ([^\n]*)\n\[Dialogue Context\]\n(.*)\[Response\]", "reply": r"MEM<\1> CTX<\2>"},
]


def _config(tmp: Path, data: Path, extra: str = "") -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "msc-memory.yaml").read_text())
    cfg["model"] = {"backend": "scripted", "options": {"rules": RULES, "default": "?"}, "cache": False}
    cfg["data"] = {"files": {"episode": str(data)}, "systems": {s: str(data) for s in ("none", "full", "memory")}}
    cfg["output"] = str(tmp / "runs")
    path = tmp / "msc.yaml"
    path.write_text(yaml.safe_dump(cfg) + extra)
    return path


def test_three_systems_differ_only_in_what_they_remember(tmp_path: Path) -> None:
    data = tmp_path / "eps.jsonl"
    data.write_text(json.dumps(EPISODE) + "\n")
    summary = run_pipeline(_config(tmp_path, data), progress=False)
    rows = {r["fields"]["system"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert set(rows) == {"none", "full", "memory"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["none"]["outputs"]["gold"]["value"] == "Oh no, your bees in Lyon?\nDid you catch them?"
    mem = rows["memory"]["outputs"]["reply"]
    assert [u["memory"] for u in mem["memory_updates"]] == ["User is Ada. User keeps bees.",
                                                            "User is Ada. User keeps bees. User lives in Lyon."]
    first_mem = mem["value"].split("\n")[0]
    assert first_mem.startswith("MEM<User is Ada. User keeps bees. User lives in Lyon.>")
    assert "I moved to Lyon" not in first_mem  # memory, not the old transcript
    first_none = rows["none"]["outputs"]["reply"]["value"].split("\n")[0]
    assert first_none == "MEM<none> CTX<User: Guess what, my bees swarmed. >"
    first_full = rows["full"]["outputs"]["reply"]["value"].split("\n")[0]
    assert first_full.startswith("MEM<none> CTX<User: I am Ada and I keep bees. Bot: Bees, how lovely. User: I moved")
    assert len(mem["value"].split("\n")) == 2  # one hypothesis per gold bot turn
    scores = json.loads((summary.run_dir / "scores.json").read_text())
    assert set(scores["metrics"]["unigram_f1"]["groups"]) == {"none", "full", "memory"}
    report = (summary.run_dir / "report.md").read_text()
    assert "| memory |" in report and "| none |" in report and "| full |" in report


def test_full_context_is_truncated_to_the_window(tmp_path: Path) -> None:
    data = tmp_path / "eps.jsonl"
    data.write_text(json.dumps(EPISODE) + "\n")
    cfg = yaml.safe_load(_config(tmp_path, data).read_text())
    cfg["steps"][1]["dialogue"]["context_tokens"] = 20
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    summary = run_pipeline(path, progress=False)
    full = next(r for r in read_jsonl(summary.run_dir / "results.jsonl") if r["fields"]["system"] == "full")
    first = full["outputs"]["reply"]["value"].split("\n")[0]
    assert "I am Ada" not in first and "Guess what" in first  # the oldest turns went first


def test_a_non_msc_row_is_a_recorded_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "eps.jsonl", [EPISODE, {"dialog": "not a list"}])
    summary = run_pipeline(_config(tmp_path, data), progress=False)
    bad = [r for r in read_jsonl(summary.run_dir / "results.jsonl") if r["status"] != "ok"]
    assert len(bad) == 3 and all("not MSC-shaped" in r["error"]["message"] for r in bad)


@pytest.mark.shared_data
def test_msc_config_runs_on_the_shared_data(tmp_path: Path) -> None:
    data = REPO.parent / "shared" / "data" / "msc" / "msc_session3.dev.jsonl"
    if not data.exists():
        pytest.skip("../shared/data/msc is absent")
    summary = run_pipeline(_config(tmp_path, data), ["data.limit=2"], progress=False)
    assert summary.total == 6 and summary.errors == 0


def test_judge_rates_each_response_and_records_parse_failures(tmp_path: Path) -> None:
    from promptweave.pipelines.steps.dialogue import parse_double_bracket

    assert parse_double_bracket("Fine. Rating: [[72]]") == 72
    assert parse_double_bracket("[[72]] or [[80]]") is None and parse_double_bracket("[[0]]") is None
    assert parse_double_bracket("no rating") is None and parse_double_bracket("[[7]] ... [[7]]") == 7
    data = tmp_path / "eps.jsonl"
    data.write_text(json.dumps({**EPISODE, "personas": [["I keep bees."], ["I am a bot."]]}) + "\n")
    cfg = yaml.safe_load(_config(tmp_path, data).read_text())
    cfg["models"] = {"judge": {"backend": "scripted", "cache": False, "options": {
        "rules": [{"match": r"(?s)- I am a bot\..*Bot: MEM<User is", "reply": "Consistent. Rating: [[90]]"},
                  # the second response's context holds the first gold bot turn: an unparsable reply
                  {"match": r"(?s)Bot: Oh no, your bees", "reply": "I cannot rate this."}],
        "default": "Rating: [[40]]"}}}
    cfg["steps"].append({"id": "consistency", "model": "judge",
                         "dialogue_judge": {"of": "reply", "episode": "episode", "aspect": "consistency"}})
    path = tmp_path / "judged.yaml"
    path.write_text(yaml.safe_dump(cfg))
    summary = run_pipeline(path, progress=False)
    rows = {r["fields"]["system"]: r["outputs"]["consistency"] for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert rows["memory"]["scores"] == [90.0, 90.0] and rows["memory"]["value"] == 90.0
    assert rows["none"]["scores"] == [40.0, None] and rows["none"]["parse_status"] == "partial"
    assert rows["none"]["raw"][1] == "I cannot rate this." and rows["none"]["value"] == 40.0  # never a 0
    judges = json.loads((summary.run_dir / "scores.json").read_text())["judges"]["consistency"]
    assert judges["groups"]["memory"]["mean"] == 90.0 and judges["groups"]["none"]["mean"] == 40.0


def test_memory_overlap_against_gold_personas(tmp_path: Path) -> None:
    episode = {**EPISODE, "previous_dialogs": [
        {**EPISODE["previous_dialogs"][0], "personas": [["User is Ada.", "I keep bees."], []]},
        {**EPISODE["previous_dialogs"][1], "personas": [["User lives in Lyon."], ["I like jazz."]]}]}
    data = tmp_path / "eps.jsonl"
    data.write_text(json.dumps(episode) + "\n")
    summary = run_pipeline(_config(tmp_path, data), progress=False)
    rows = {r["fields"]["system"]: r["outputs"] for r in read_jsonl(summary.run_dir / "results.jsonl")}
    # memory "User is Ada. User keeps bees. User lives in Lyon.": two gold facts match exactly;
    # "I keep bees." ~ "User keeps bees." is F1 1/3 (below 0.5), "I like jazz." matches nothing
    out = rows["memory"]["memory_recall"]
    assert out["gold_facts"] == 4 and out["memory_sentences"] == 3
    assert out["value"] == pytest.approx(50.0) and out["recall"] == pytest.approx(0.5)
    assert rows["memory"]["memory_precision"]["value"] == pytest.approx(100 * 2 / 3)
    assert rows["none"]["memory_recall"]["value"] is None  # no memory, no score
    judges = json.loads((summary.run_dir / "scores.json").read_text())["judges"]
    assert judges["memory_recall"]["groups"]["memory"]["scored"] == 1

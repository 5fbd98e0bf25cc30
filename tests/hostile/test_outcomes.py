"""Inputs whose documented outcome is not an error: they must mean what they say. Secrets given as
``${VAR}`` stay out of manifest.json; CSV quoted newlines and TSV ``None`` cells stay text; YAML
merge keys work; ``output``/``cache`` resolve against the config's directory; systems are ranked
on their common segments; report.md stays small; languages and tokenizers come from BCP-47 codes;
a server's usage counts enter the ledger only when they are counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from promptweave import run_pipeline
from tests.helpers import cli, read_jsonl, write_jsonl

ROWS = [{"id": f"s{i}", "source": f"Satz {i}.", "reference": f"Sentence {i}."} for i in range(3)]


def _pipeline(tmp: Path, body: str, rows: list[dict] | None = None, data: str = "d.jsonl") -> Path:
    if rows is not None:
        write_jsonl(tmp / data, rows)
    cfg = tmp / "pipe.yaml"
    cfg.write_text("name: outcome\nrun_id: r1\n" + body, encoding="utf-8")
    return cfg


@pytest.mark.parametrize("where", [
    "model: {backend: scripted, options: {default: 'EN ${PW_T_SECRET} {echo}'}}",
    "model: {backend: scripted}\ndescription: 'token=${PW_T_SECRET}'",
    "model: {backend: scripted}\nmodels:\n  judge: {backend: scripted, model: 'm-${PW_T_SECRET}'}",
    "model: {backend: scripted}\nx-keys: &k {default: '${PW_T_SECRET}'}\nmodels:\n  j:\n    backend: scripted\n    options:\n      <<: *k",
])
def test_env_secrets_stay_out_of_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("PW_T_SECRET", secret)
    cfg = _pipeline(tmp_path, where + "\ndata: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\noutput: runs\n", ROWS)
    summary = run_pipeline(cfg)
    manifest = (summary.run_dir / "manifest.json").read_text()
    assert secret not in manifest
    assert "${PW_T_SECRET}" in manifest


def test_record_env_marks_a_value_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_T_MODEL", "my-model-name")
    cfg = _pipeline(tmp_path, "model: {backend: scripted, model: '${PW_T_MODEL}'}\nrecord_env: [PW_T_MODEL]\n"
                    "data: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n", ROWS)
    manifest = json.loads((run_pipeline(cfg).run_dir / "manifest.json").read_text())
    assert manifest["config"]["model"]["model"] == "my-model-name"


def test_csv_quoted_newline_and_tsv_none_stay_text(tmp_path: Path) -> None:
    from promptweave.config import DataConfig
    from promptweave.data import load_rows

    (tmp_path / "d.csv").write_text('source,reference\n"line one\nline two","a, b"\nx,y\n', encoding="utf-8")
    rows = load_rows(DataConfig(path="d.csv"), tmp_path)
    assert rows[0][1]["source"] == "line one\nline two" and rows[1][1]["source"] == "x"
    (tmp_path / "d.tsv").write_text("source\tnote\nNone\tNone\n", encoding="utf-8")
    assert load_rows(DataConfig(path="d.tsv"), tmp_path)[0][1] == {"source": "None", "note": "None"}
    assert load_rows(DataConfig(path="d.tsv", null_values=["None"]), tmp_path)[0][1]["note"] is None


def test_merge_key_is_supported(tmp_path: Path) -> None:
    from promptweave.config import load_config

    cfg = _pipeline(tmp_path, "x-model: &m {backend: scripted, max_retries: 3, options: {default: hi}}\n"
                    "model:\n  <<: *m\n  max_retries: 0\n"
                    "data: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n", ROWS)
    m = load_config(cfg).pipeline.model
    assert (m.backend, m.max_retries, m.options) == ("scripted", 0, {"default": "hi"})


def test_output_and_cache_resolve_against_the_config(tmp_path: Path) -> None:
    """The same command from two working directories finds the same run (everything resumed)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    cfg = _pipeline(proj, "model: {backend: scripted}\ndata: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\noutput: runs\ncache: c/cache.sqlite\n", ROWS)
    (proj / "c").mkdir()
    first = cli("run", "proj/pipe.yaml", "--json", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["run_dir"] == str(proj / "runs" / "outcome" / "r1")
    other = tmp_path / "elsewhere"
    other.mkdir()
    again = cli("run", str(cfg), "--json", "--no-progress", cwd=other)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 3
    assert (proj / "c" / "cache.sqlite").exists() and not (other / "runs").exists()


def test_systems_are_ranked_on_common_segments(tmp_path: Path) -> None:
    rows = [{"id": f"s{i}", "source": f"Satz {i}.", "reference": f"Sentence {i}.",
             "translations": [{"system": "good", "hypothesis": f"Sentence {i}."},
                              {"system": "bad", "hypothesis": "Banana."}]} for i in range(3)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "t.yaml").write_text("messages:\n  - {role: user, content: 'Rate {{ hypothesis }}'}\n")
    # concurrency 1 and fail_first 1: the first row (s0, system good) fails; good then has 2 of 3
    cfg = _pipeline(tmp_path, "model: {backend: scripted, max_retries: 0, options: {default: '50', fail_first: 1}}\n"
                    "data: {path: d.jsonl, key: id, explode: translations, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: judge\n    generate: {template: t.yaml, parser: number}\n"
                    "metrics: [bleu]\nscoring: {hypothesis: hypothesis, group_by: system}\nconcurrency: 1\n"
                    "cache: 'off'\n")
    summary = run_pipeline(cfg)
    scores = json.loads((summary.run_dir / "scores.json").read_text())
    assert scores["comparison"]["common_segments"] == 2 and scores["comparison"]["segments"] == 3
    groups = scores["metrics"]["bleu"]["groups"]
    assert groups["good"]["n"] == 2 and groups["bad"]["n"] == 2
    assert "Warning:" in (summary.run_dir / "report.md").read_text()


def test_report_does_not_copy_a_huge_reply(tmp_path: Path) -> None:
    big = "word " * 400_000  # 2 MB of reply
    cfg = _pipeline(tmp_path, "model: {backend: scripted, options: {default: '" + big + "'}}\n"
                    "data: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp, cleanup: false, check_language: false}\n"
                    "cache: 'off'\n", ROWS[:1])
    summary = run_pipeline(cfg)
    report = (summary.run_dir / "report.md").read_text()
    assert len(report) < 20_000 and "more characters]" in report
    assert len(read_jsonl(summary.run_dir / "results.jsonl")[0]["outputs"]["hyp"]["value"]) >= 1_900_000


@pytest.mark.parametrize("code, name, tokenizer", [
    ("zh-Hant", "Chinese (Traditional)", "zh"), ("zh_TW", "Chinese (Taiwan)", "zh"), ("cmn", "Chinese", "zh"),
    ("fil", "Filipino", "13a"), ("iw", "Hebrew", "13a"), ("de-CH", "German (Switzerland)", "13a"),
    ("sah", "Yakut", "13a"), ("EN", "English", "13a"),
])
def test_language_names_and_tokenizers(code: str, name: str, tokenizer: str) -> None:
    from promptweave.evaluators.lexical import default_tokenizer
    from promptweave.languages import language_name

    assert name in language_name(code)
    assert default_tokenizer(code) == tokenizer


def test_prompt_names_the_normalised_language(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, "model: {backend: scripted}\ndata: {path: d.jsonl, key: id, src_lang: de, tgt_lang: fil}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n", ROWS[:1])
    res = cli("validate", str(cfg))
    assert res.returncode == 0, res.stderr
    from promptweave.config import load_config
    from promptweave.pipelines.engine import Engine
    from promptweave.pipelines.steps import Row

    loaded = load_config(cfg)
    engine = Engine(loaded, tmp_path, progress=False)
    engine.build_steps()
    rows = engine.load_data()
    msgs = engine.steps[0].render(engine.steps[0].row_vars(Row(0, rows[0][0], rows[0][1])))  # type: ignore[attr-defined]
    assert "Filipino translation" in msgs[-1].content and "fil translation" not in msgs[-1].content


@pytest.mark.parametrize("prompt, completion, counted", [
    (-5, 7, (0, 7)), ("12", 3, (0, 3)), (4.0, True, (4, 0)), (float("nan"), -1, (0, 0)), (10, 20, (10, 20)),
])
async def test_usage_counts_enter_the_ledger_only_when_they_are_counts(prompt: object, completion: object,
                                                                       counted: tuple[int, int]) -> None:
    from promptweave.models import Completion, ModelConfig
    from promptweave.models.runtime import Ledger, ModelRuntime
    from promptweave.models.scripted import ScriptedModel

    class OddUsage(ScriptedModel):  # a server that reports nonsense usage
        async def complete(self, messages, params):  # type: ignore[no-untyped-def]
            return Completion(text="ok", prompt_tokens=prompt, completion_tokens=completion)  # type: ignore[arg-type]

    ledger = Ledger()
    rt = ModelRuntime(ModelConfig(backend="scripted"), OddUsage(), None, ledger)
    from promptweave.models import Message

    res = await rt.chat([Message(role="user", content="hi")])
    assert res.ok
    assert (ledger.prompt_tokens, ledger.completion_tokens) == counted
    json.dumps(ledger.to_dict(), allow_nan=False)


def test_results_hold_only_standard_json(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, "model: {backend: scripted}\ndata: {path: d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                    "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n",
                    [{**r, "score": 1.5, "meta": {"x": [1, None]}} for r in ROWS])
    summary = run_pipeline(cfg)
    for line in (summary.run_dir / "results.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    assert os.path.getsize(summary.run_dir / "results.jsonl") > 0

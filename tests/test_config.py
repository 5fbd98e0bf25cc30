from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptweave.config import json_schema, load_config, load_config_text
from promptweave.errors import ConfigError
from tests.helpers import SAMPLE

BASE = f"name: t\ndata: {{path: {SAMPLE}, src_lang: de, tgt_lang: en}}\n"


def err(text: str, overrides: list[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "pipe.yaml", overrides)
    return info.value


@pytest.mark.parametrize("text, line, key, fragment", [
    (BASE + "steps:\n  - translate: {promt: tsp}\n", 4, "steps[0].translate.promt", "did you mean 'prompt'"),
    (BASE + "modle: {}\nsteps: [{translate: {}}]\n", 3, "modle", "did you mean 'model'"),
    ("name: t\nmodel: {temperature: hot}\n" + BASE[8:] + "steps: [{translate: {}}]\n", 2, "model.temperature",
     "valid number"),
    (BASE + "steps:\n  - {id: a, translate: {}}\n  - {id: a, generate: {template: tsp}}\n", 5, "steps[1].id",
     "duplicate step id"),
    (BASE + "steps:\n  - {id: a, transl: {}}\n", 4, "steps[0].transl", "did you mean 'translate'"),
    (BASE + "steps:\n  - {id: a, translate: {}, model: judge}\n", 4, "steps[0].model", "no model named 'judge'"),
    (BASE + "steps: [{translate: {}}]\nmetrics: [bleu, chrff]\n", 4, "metrics[1]", "did you mean 'chrf'"),
    ("name: t\nname: u\n", 2, "name", "duplicate key"),
    ("name: t\ndata: {path: x\n", 3, None, "invalid YAML"),
    (BASE + "steps: []\n", 3, "steps", "at least 1"),
    ("name: bad name\n" + BASE[8:] + "steps: [{translate: {}}]\n", 1, "name", "pattern"),
])
def test_errors_name_line_and_key(text: str, line: int, key: str | None, fragment: str) -> None:
    e = err(text)
    assert e.line == line, str(e)
    assert e.key == key, str(e)
    assert fragment in str(e)
    assert str(e).startswith(f"pipe.yaml:{line}: ")
    assert "\n" not in str(e)


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_TEST_MODEL", "my-model")
    loaded = load_config_text(BASE + "model: {model: '${PW_TEST_MODEL}', base_url: '${PW_NOPE:-http://x/v1}'}\n"
                              "steps: [{translate: {}}]\n")
    assert loaded.pipeline.model.model == "my-model"
    assert loaded.pipeline.model.base_url == "http://x/v1"
    e = err(BASE + "model: {model: '${PW_SURELY_UNSET_VAR}'}\nsteps: [{translate: {}}]\n")
    assert e.line == 3 and "PW_SURELY_UNSET_VAR is not set" in str(e)


def test_set_overrides() -> None:
    loaded = load_config_text(BASE + "steps: [{translate: {prompt: tsp}}]\n", overrides=[
        "model.temperature=0.3", "steps.0.translate.prompt=dsp", "data.limit=2", "models.judge.backend=openai"])
    assert loaded.pipeline.model.temperature == 0.3
    assert loaded.steps[0].config.prompt == "dsp"  # type: ignore[attr-defined]
    assert loaded.pipeline.data.limit == 2
    assert loaded.pipeline.models["judge"].backend == "openai"
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config_text(BASE + "steps: [{translate: {}}]\n", overrides=["model.temperature"])


def test_config_hash_is_stable_and_sensitive() -> None:
    a = load_config_text(BASE + "steps: [{translate: {}}]\n").config_hash()
    b = load_config_text(BASE + "steps: [{translate: {}}]\n").config_hash()
    c = load_config_text(BASE + "steps: [{translate: {}}]\n", overrides=["model.temperature=0.5"]).config_hash()
    assert a == b != c


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: t\ndescription: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.line == 2 and "UTF-8" in str(info.value)


def test_schema_lists_every_step_kind() -> None:
    schema = json_schema()
    kinds = {next(k for k in v["properties"] if k not in {"id", "model"})
             for v in schema["properties"]["steps"]["items"]["oneOf"]}
    assert {"translate", "generate"} <= kinds
    json.dumps(schema)  # serialisable
    assert schema["additionalProperties"] is False


def test_env_values_are_recorded_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_TEST_KEY", "secret-value-123")
    loaded = load_config_text(BASE + "model: {backend: scripted, options: {default: 'k=${PW_TEST_KEY}'}}\n"
                              "steps: [{translate: {}}]\n")
    assert loaded.pipeline.model.options["default"] == "k=secret-value-123"
    assert loaded.manifest_config()["model"]["options"]["default"] == "k=${PW_TEST_KEY}"
    redacted = loaded.redact({"identity": {"default": "k=secret-value-123"}, "argv": ["x", "secret-value-123"]})
    assert "secret-value-123" not in str(redacted)


def test_overridden_values_are_recorded_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_TEST_M", "env-model")
    loaded = load_config_text(BASE + "model: {model: '${PW_TEST_M}'}\nsteps: [{translate: {}}]\n",
                              overrides=["model.model=cli-model"])
    assert loaded.manifest_config()["model"]["model"] == "cli-model"


def test_merge_keys_and_extension_keys() -> None:
    loaded = load_config_text("x-m: &m {backend: scripted, temperature: 0.5}\n" + BASE +
                              "model:\n  <<: *m\n  temperature: 0\nsteps: [{translate: {}}]\n")
    assert loaded.pipeline.model.backend == "scripted" and loaded.pipeline.model.temperature == 0
    assert "x-m" not in loaded.raw


def test_output_and_cache_resolve_against_base_dir(tmp_path: Path) -> None:
    loaded = load_config_text(BASE + "steps: [{translate: {}}]\noutput: runs\ncache: c.sqlite\n", "p.yaml",
                              base_dir=tmp_path)
    assert loaded.pipeline.output == str(tmp_path.resolve() / "runs")
    assert loaded.pipeline.cache == str(tmp_path.resolve() / "c.sqlite")
    off = load_config_text(BASE + "steps: [{translate: {}}]\ncache: 'off'\noutput: /abs/runs\n", base_dir=tmp_path)
    assert off.pipeline.cache == "off" and off.pipeline.output == "/abs/runs"


@pytest.mark.parametrize("value, expected", [("zh_hant", "zh-Hant"), ("EN", "en"), ("iw", "he"), ("pt_br", "pt-BR")])
def test_languages_are_normalised(value: str, expected: str) -> None:
    loaded = load_config_text(BASE.replace("tgt_lang: en", f"tgt_lang: {value}") + "steps: [{translate: {}}]\n")
    assert loaded.pipeline.data.tgt_lang == expected


@pytest.mark.parametrize("steps, fragment", [
    ("steps:\n  - id: source\n    translate: {}\n", "reserved name"),
    ("steps:\n  - id: tgt_lang_name\n    translate: {}\n", "reserved name"),
    ("steps:\n  - id: _x\n    translate: {}\n", "not starting with _"),
])
def test_step_ids_that_would_hide_variables(steps: str, fragment: str) -> None:
    e = err(BASE + steps)
    assert e.line == 4 and fragment in str(e)


@pytest.mark.parametrize("metric, fragment", [
    ("{chrf: {char_order: -1}}", "char_order"), ("{bleu: {tokenize: zz}}", "unknown tokenizer"),
    ("{ter: {normalized: 2}}", "normalized"), ("{bleu: {smooth_method: x}}", "smooth_method"),
])
def test_metrics_are_built_at_load(metric: str, fragment: str) -> None:
    e = err(BASE + f"steps: [{{translate: {{}}}}]\nmetrics: [{metric}]\n")
    assert e.line == 4 and fragment in str(e)


def test_comet_without_its_extra_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "comet" else real(name, *a))
    e = err(BASE + "steps: [{translate: {}}]\nmetrics: [comet]\n")
    assert e.line == 4 and "pip install 'promptweave[comet]'" in str(e)

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

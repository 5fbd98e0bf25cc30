"""A step that sends images needs a backend that takes them: said when the file is validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptweave.config import load_config_text
from promptweave.errors import ConfigError

BASE = "name: v\ndata: {path: q.jsonl}\n"


@pytest.mark.parametrize("model, ok", [
    ("{backend: llamacpp}", False),
    ("{backend: scripted}", False),
    ("{backend: scripted, options: {images: true}}", True),
    ("{backend: openai, base_url: 'http://127.0.0.1:1/v1'}", True),
])
@pytest.mark.parametrize("kind", ["vqa", "dc2"])
def test_image_steps_check_the_backend(model: str, ok: bool, kind: str) -> None:
    text = f"{BASE}model: {model}\nsteps:\n  - id: s\n    {kind}: {{}}\n"
    if ok:
        load_config_text(text, "p.yaml")
        return
    with pytest.raises(ConfigError, match=r"p.yaml:\d+: 'model.backend': step 's' sends images, but backend"):
        load_config_text(text, "p.yaml")


def test_named_model_is_checked_at_the_step() -> None:
    text = (f"{BASE}model: {{backend: openai, base_url: 'http://127.0.0.1:1/v1'}}\nmodels: {{text: {{backend: llamacpp}}}}\n"
            "steps:\n  - id: s\n    model: text\n    vqa: {}\n")
    with pytest.raises(ConfigError, match=r"'steps\[0\].model': step 's' sends images"):
        load_config_text(text, "p.yaml")




@pytest.mark.parametrize("dc2, message", [
    ("{embedder: clip}", "dc2.embedder clip needs dc2.clip_checkpoint"),
    ("{embedder: clip, clip_checkpoint: /nonexistent/clip.bin}", None),
    ("{embedder: nope}", "unknown embedder 'nope'; known: clip, pixel-stats"),
])
def test_dc2_embedder_settings_fail_before_any_call(dc2: str, message: str | None) -> None:
    from promptweave.pipelines.engine import Engine

    text = (f"{BASE}model: {{backend: scripted, options: {{images: true}}}}\n"
            f"steps:\n  - id: s\n    dc2: {{dc2: {dc2}}}\n")
    loaded = load_config_text(text, "p.yaml")
    engine = Engine(loaded, Path("."), progress=False)
    if message is None:
        engine.build_steps()  # a checkpoint path is only opened when the first image is divided
        return
    with pytest.raises(ConfigError, match=rf"p.yaml:\d+: 'steps\[0\].dc2': .*{message}"):
        engine.build_steps()


def test_unknown_dc2_key_names_the_line() -> None:
    text = (f"{BASE}model: {{backend: scripted, options: {{images: true}}}}\n"
            "steps:\n  - id: s\n    dc2:\n      dc2: {overlapp: 0.1}\n")
    with pytest.raises(ConfigError, match=r"p.yaml:7: 'steps\[0\].dc2.dc2.overlapp': unknown key \(did you mean 'overlap'\?\)"):
        load_config_text(text, "p.yaml")


def test_shipped_config_validates() -> None:
    from promptweave.config import load_config

    loaded = load_config(Path(__file__).resolve().parents[2] / "configs" / "dc2-hrbench.yaml")
    assert [s.kind for s in loaded.steps] == ["vqa", "dc2"]
    assert loaded.steps[1].config.dc2.overlap == 0.25  # type: ignore[attr-defined]

"""The llama.cpp probe: a child that dies by a signal turns llama.cpp's extra buffer types off,
once per machine + build + model, with one notice; ``options.extra_bufts`` forces either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptweave.errors import ConfigError
from promptweave.models import ModelConfig
from promptweave.models import llamacpp_probe as probe

pytest.importorskip("llama_cpp")  # the probe key names the llama.cpp build

SEGFAULT = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
SUCCEED = [sys.executable, "-c", "pass"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTWEAVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF not really")
    return path


def _probe_with(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> list[int]:
    calls: list[int] = []

    def fake(model_path: Path) -> list[str]:
        calls.append(1)
        return command

    monkeypatch.setattr(probe, "probe_command", fake)
    return calls


def test_a_child_killed_by_sigsegv_turns_extra_bufts_off_once(home, gguf, monkeypatch, capsys):
    calls = _probe_with(monkeypatch, SEGFAULT)
    assert probe.resolve_extra_bufts("auto", gguf) is False
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "llama.cpp died with SIGSEGV using extra buffer types" in err
    assert "model.options.extra_bufts: on|off" in err and str(home / "llamacpp-probe.json") in err
    (verdict,) = json.loads((home / "llamacpp-probe.json").read_text()).values()
    assert verdict["extra_bufts"] is False and "SIGSEGV" in verdict["reason"]

    # the verdict is remembered: no second child, no second notice
    assert probe.resolve_extra_bufts(None, gguf) is False
    assert calls == [1] and capsys.readouterr().err == ""


def test_a_healthy_child_keeps_the_fast_path_quietly(home, gguf, monkeypatch, capsys):
    calls = _probe_with(monkeypatch, SUCCEED)
    assert probe.resolve_extra_bufts("auto", gguf) is True
    assert probe.resolve_extra_bufts("auto", gguf) is True
    assert calls == [1] and capsys.readouterr().err == ""


def test_a_new_model_file_is_probed_again(home, gguf, monkeypatch, tmp_path):
    calls = _probe_with(monkeypatch, SUCCEED)
    probe.resolve_extra_bufts("auto", gguf)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"another model")
    probe.resolve_extra_bufts("auto", other)
    assert calls == [1, 1]


def test_a_python_error_in_the_child_is_not_remembered(home, gguf, monkeypatch):
    calls = _probe_with(monkeypatch, [sys.executable, "-c", "raise SystemExit(3)"])
    assert probe.resolve_extra_bufts("auto", gguf) is True  # the real load reports the real error
    probe.resolve_extra_bufts("auto", gguf)
    assert calls == [1, 1] and not (home / "llamacpp-probe.json").exists()


@pytest.mark.parametrize("setting, expected", [("on", True), (True, True), ("off", False), (False, False),
                                               ("OFF", False), ("yes", True)])
def test_a_forced_setting_skips_the_probe(home, gguf, monkeypatch, setting, expected):
    calls = _probe_with(monkeypatch, SEGFAULT)
    assert probe.resolve_extra_bufts(setting, gguf) is expected
    assert calls == []


def test_a_bad_setting_is_a_config_error(gguf):
    with pytest.raises(ConfigError, match="extra_bufts is auto, on or off"):
        probe.resolve_extra_bufts("sometimes", gguf)


# ------------------------------------------------------------------ the real model


@pytest.mark.embedded
def test_fallback_loads_the_real_model_without_extra_bufts(embedded_model_path, home, monkeypatch, capsys):
    """The crashing path forced: the model then loads with use_extra_bufts off, and answers."""
    import asyncio

    from promptweave.models import Message, llamacpp

    _probe_with(monkeypatch, SEGFAULT)
    model = llamacpp.create(ModelConfig(backend="llamacpp", model=str(embedded_model_path),
                                        options={"n_ctx": 512}))
    assert "died with SIGSEGV" in capsys.readouterr().err
    try:
        done = asyncio.run(model.complete([Message(role="user", content="Translate into English: Guten Morgen!")],
                                          ModelConfig(max_tokens=16).gen_params()))
        assert done.text.strip()
        assert model._shared.llm().model_params.use_extra_bufts is False
    finally:
        llamacpp.unload_all()


@pytest.mark.embedded
def test_default_settings_never_take_the_process_down(embedded_model_path, tmp_path):
    """The real probe on this machine, then a real call, in a child so that a crash fails the test
    instead of killing pytest. On an AMX CPU whose llama.cpp build crashes, this needs the fallback."""
    script = (
        "import asyncio, sys\n"
        "from promptweave.models import Message, ModelConfig, create_backend\n"
        f"m = create_backend(ModelConfig(backend='llamacpp', model={str(embedded_model_path)!r}, max_tokens=16))\n"
        "c = asyncio.run(m.complete([Message(role='user', content='Translate into English: Danke schön!')],"
        " ModelConfig(max_tokens=16).gen_params()))\n"
        "print(c.text)\n")
    env = {**__import__("os").environ, "PROMPTWEAVE_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.strip()
    verdicts = json.loads((tmp_path / "home" / "llamacpp-probe.json").read_text())
    assert len(verdicts) == 1  # the probe ran and its verdict was kept

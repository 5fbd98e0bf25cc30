"""``promptweave serve`` set-up errors: one line naming the file and key, non-zero exit."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import cli

from .server import serve_config


def test_missing_file(tmp_path: Path) -> None:
    r = cli("serve", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_unknown_key_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("model: {backend: scripted}\nmemory:\n  polcy: session_end\n", encoding="utf-8")
    r = cli("serve", str(cfg))
    assert r.returncode == 2 and f"{cfg}:3" in r.stderr and "did you mean 'policy'" in r.stderr


def test_keys_env_unset_refuses_to_start(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path, keys_env="PW_SURELY_UNSET_KEYS")
    r = cli("serve", str(cfg))
    assert r.returncode == 2 and "export PW_SURELY_UNSET_KEYS" in r.stderr and "Traceback" not in r.stderr


def test_unknown_update_model(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("model: {backend: scripted}\nmemory: {update_model: cheap}\n", encoding="utf-8")
    r = cli("serve", str(cfg))
    assert r.returncode == 2 and "memory.update_model" in r.stderr and "define it under 'models:'" in r.stderr

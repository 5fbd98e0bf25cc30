"""The CLI as a user meets it: bad input gives one line on stderr, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SAMPLE, cli, scripted_pipeline

GOOD_DATA = f"data: {{path: {SAMPLE}, src_lang: de, tgt_lang: en}}\n"


@pytest.mark.parametrize("body, where, what", [
    ("name: t\n" + GOOD_DATA + "steps:\n  - translate: {promt: tsp}\n", ":4:", "did you mean 'prompt'"),
    ("name: t\nmodel: {max_tokens: many}\n" + GOOD_DATA + "steps: [{translate: {}}]\n", ":2:", "valid integer"),
    ("name: t\ndata: {path: missing.jsonl}\nsteps: [{translate: {}}]\n", ":2:", "does not exist"),
    ("name: t\n" + GOOD_DATA + "steps:\n  - generate: {template: nope}\n", ":4:", "unknown template 'nope'"),
])
def test_one_line_error_exit_2(tmp_path: Path, body: str, where: str, what: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body, encoding="utf-8")
    for command in ("validate", "run"):
        res = cli(command, str(cfg), cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("error: ") and f"bad.yaml{where}" in lines[0] and what in lines[0]
        assert "Traceback" not in res.stderr


def test_missing_template_variable_is_caught_before_any_call(tmp_path: Path) -> None:
    tpl = tmp_path / "t.yaml"
    tpl.write_text("messages:\n  - {role: user, content: '{{ source }} {{ glossary }}'}\n")
    cfg = scripted_pipeline(tmp_path)
    cfg.write_text(cfg.read_text().replace("translate: {prompt: tsp}", f"translate: {{prompt: {tpl}}}"))
    res = cli("run", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "'glossary' is undefined" in res.stderr and "pipe.yaml:6" in res.stderr
    assert not (tmp_path / "runs" / "scripted").exists() or not any((tmp_path / "runs" / "scripted").rglob("results.jsonl"))


def test_run_validate_and_json_summary(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path)
    ok = cli("validate", str(cfg))
    assert ok.returncode == 0 and "OK" in ok.stdout and "5 rows" in ok.stdout
    res = cli("run", str(cfg), "--json", "--no-progress", "--set", "data.limit=3")
    assert res.returncode == 0, res.stderr
    assert '"rows": 3' in res.stdout and '"calls": 3' in res.stdout


def test_templates_and_schema_commands() -> None:
    listing = cli("templates", "list")
    assert listing.returncode == 0 and "tsp" in listing.stdout and "icl" in listing.stdout
    shown = cli("templates", "show", "tsp")
    assert "You are a machine translation system." in shown.stdout
    missing = cli("templates", "show", "tspp")
    assert missing.returncode == 2 and "did you mean 'tsp'" in missing.stderr
    schema = cli("schema")
    assert schema.returncode == 0 and '"steps"' in schema.stdout


# ------------------------------------------------------------------ the first commands a user types


def _clean(res) -> str:  # type: ignore[no-untyped-def]
    both = res.stdout + res.stderr
    assert "Traceback" not in both, both
    return both


def test_bare_command_prints_help() -> None:
    res = cli()
    assert res.returncode in (0, 2)  # typer's no_args_is_help: 0 or 2 depending on its version
    out = _clean(res)
    assert "Usage:" in out and "run" in out and "eval" in out


def test_version_and_short_help() -> None:
    from promptweave import __version__

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"promptweave {__version__}"
    short, long = cli("-h"), cli("--help")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout and "Usage:" in short.stdout
    run_help = cli("run", "-h")
    assert run_help.returncode == 0 and "--retry-errors" in run_help.stdout


@pytest.mark.parametrize("args, what", [
    (["run"], "Missing argument"),
    (["run", "--no-such-option", "x.yaml"], "No such option: --no-such-option"),
    (["eval", "--no-such-option"], "No such option: --no-such-option"),
    (["rnu"], "Did you mean 'run'?"),
])
def test_usage_errors_exit_2_without_traceback(args: list[str], what: str) -> None:
    res = cli(*args)
    assert res.returncode == 2, res.stderr
    assert what in _clean(res)
    assert "Usage:" in res.stderr and res.stdout == ""

"""The Python API as a script and a notebook use it: a path, a dict or a config object; blocking
``run_pipeline`` and awaitable ``arun_pipeline``, also from inside a running event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from promptweave import ConfigError, arun_pipeline, load_config, run_pipeline
from promptweave.config import PipelineConfig
from tests.helpers import read_jsonl, write_jsonl


def _pipeline(tmp: Path, rows: int = 4) -> dict[str, Any]:
    data = write_jsonl(tmp / "data.jsonl", [{"source": f"Satz {i}.", "reference": f"Satz {i}."}
                                            for i in range(rows)])
    return {"name": "api", "model": {"backend": "scripted", "options": {"default": "{echo}"}},
            "data": {"path": str(data), "src_lang": "de", "tgt_lang": "en"},
            "steps": [{"id": "hyp", "translate": {"prompt": "tsp"}}],
            "metrics": ["chrf"], "output": str(tmp / "runs")}


def _check(summary: Any, rows: int = 4) -> None:
    assert summary.total == rows and summary.errors == 0
    assert summary.scores["metrics"]["chrf"]["corpus"] > 0
    assert len(read_jsonl(summary.run_dir / "results.jsonl")) == rows
    assert (summary.run_dir / "report.md").is_file()


@pytest.mark.parametrize("form", ["path", "str", "dict", "PipelineConfig", "LoadedConfig"])
def test_run_pipeline_accepts_every_form(tmp_path: Path, form: str) -> None:
    import yaml

    raw = _pipeline(tmp_path)
    file = tmp_path / "pipe.yaml"
    file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config: Any = {"path": file, "str": str(file), "dict": raw,
                   "PipelineConfig": PipelineConfig.model_validate(raw),
                   "LoadedConfig": load_config(file)}[form]
    _check(run_pipeline(config, ["data.limit=3"]), rows=3)
    _check(run_pipeline(config))


def test_same_pipeline_in_any_form_resumes_the_same_run(tmp_path: Path) -> None:
    raw = _pipeline(tmp_path)
    first = run_pipeline(raw)
    again = run_pipeline(PipelineConfig.model_validate(raw))
    assert again.run_dir == first.run_dir and again.ran == 0 and again.ledger.calls == 0


def test_a_bad_dict_is_a_one_line_config_error(tmp_path: Path) -> None:
    raw = _pipeline(tmp_path)
    raw["steps"][0]["translate"] = {"promt": "tsp"}
    with pytest.raises(ConfigError, match=r"<dict>:\d+: 'steps\[0\]\.translate\.promt': unknown key.*'prompt'"):
        run_pipeline(raw)
    with pytest.raises(TypeError, match="a path, a dict, a PipelineConfig or a LoadedConfig"):
        run_pipeline(42)  # type: ignore[arg-type]


async def test_arun_pipeline_inside_a_running_loop(tmp_path: Path) -> None:
    """What a notebook cell does: ``await arun_pipeline(...)`` on the notebook's own loop."""
    assert asyncio.get_running_loop().is_running()
    seen: list[Path] = []
    summary = await arun_pipeline(_pipeline(tmp_path), on_start=seen.append)
    _check(summary)
    assert seen == [summary.run_dir]


async def test_run_pipeline_inside_a_running_loop(tmp_path: Path) -> None:
    """``run_pipeline`` called from a running loop blocks and finishes instead of failing."""
    summary = run_pipeline(_pipeline(tmp_path))
    _check(summary)

"""The ``executor:`` block: validation, and the one-line error when Ray is missing (no Ray needed)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from promptweave.config import load_config
from promptweave.errors import ConfigError
from promptweave.pipelines.engine import Engine, run_dir_for
from promptweave.pipelines.identity import RunIdentity
from tests.helpers import cli
from tests.test_faults import make_pipeline


def test_executor_block_defaults_shorthand_and_identity(tmp_path: Path) -> None:
    cfg = make_pipeline(tmp_path, "http://127.0.0.1:9/v1", 2)
    plain = load_config(cfg)
    assert plain.pipeline.executor.kind == "local"
    ray = load_config(cfg, ["executor={kind: ray, actors: 4, num_gpus: 1, resources: {a100: 1}}"])
    assert (ray.pipeline.executor.actors, ray.pipeline.executor.num_gpus) == (4, 1)
    assert load_config(cfg, ["executor=ray"]).pipeline.executor.kind == "ray"
    short = cfg.parent / "short.yaml"
    short.write_text(cfg.read_text() + "executor: ray\n")
    assert load_config(short).pipeline.executor.kind == "ray"
    assert load_config(short, ["executor.kind=local"]).pipeline.executor.kind == "local"  # what --executor sets
    # where the rows run is not what the run is: switching executors resumes the same directory
    assert RunIdentity.build(ray, []).run_id == RunIdentity.build(plain, []).run_id
    with pytest.raises(ConfigError, match="executor"):
        load_config(cfg, ["executor={kind: spark}"])
    with pytest.raises(ConfigError, match="actors"):
        load_config(cfg, ["executor={kind: ray, actors: 0}"])


def test_without_ray_installed_executor_ray_is_a_one_line_config_error(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_pipeline(tmp_path, "http://127.0.0.1:9/v1", 2, extra="executor: ray\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    loaded = load_config(cfg)
    with pytest.raises(ConfigError) as err:
        import asyncio

        asyncio.run(Engine(loaded, run_dir_for(loaded)).run())
    text = str(err.value)
    assert "pip install 'promptweave[ray]'" in text and "pipe.yaml:8: 'executor'" in text and "\n" not in text


def test_cli_without_ray_exits_with_the_install_command(tmp_path: Path) -> None:
    blocker = tmp_path / "noray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    cfg = make_pipeline(tmp_path, "http://127.0.0.1:9/v1", 2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(Path(__file__).parents[2])])}
    res = cli("run", str(cfg), "--executor", "ray", "--no-progress", cwd=tmp_path, env=env)
    assert res.returncode != 0
    assert "pip install 'promptweave[ray]'" in res.stderr and "Traceback" not in res.stderr


def test_an_address_nobody_answers_is_a_one_line_error_in_seconds(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the Ray executor needs: pip install -e '.[ray]'")
    cfg = make_pipeline(tmp_path, "http://127.0.0.1:9/v1", 2)
    res = cli("run", str(cfg), "--executor", "ray", "--address", "127.0.0.1:1", "--no-progress", cwd=tmp_path,
              timeout=60)
    assert res.returncode == 2
    assert "'executor.address': cannot start or reach Ray at 127.0.0.1:1" in res.stderr
    assert "Traceback" not in res.stderr

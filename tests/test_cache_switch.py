"""``cache: off`` as the README writes it (YAML reads it as false), ``false``, and ``--set cache=off``."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptweave import load_config, run_pipeline
from tests.helpers import scripted_pipeline


@pytest.mark.parametrize("line", ["cache: off\n", "cache: false\n", "cache: 'off'\n", "cache: no\n"])
def test_cache_off_in_the_file(tmp_path: Path, line: str) -> None:
    cfg = scripted_pipeline(tmp_path, extra=line)
    assert load_config(cfg).pipeline.cache == "off"
    first = run_pipeline(cfg)
    second = run_pipeline(cfg, run_id="fresh")  # a new run directory: without a cache every row is called again
    assert first.ledger.calls == 5 and second.ledger.calls == 5 and second.ledger.cache_hits == 0
    assert not (tmp_path / "runs" / "cache.sqlite").exists()


def test_cache_off_from_the_command_line(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path)
    assert load_config(cfg, ["cache=off"]).pipeline.cache == "off"
    assert load_config(cfg, ["cache=false"]).pipeline.cache == "off"


def test_cache_on_and_a_path(tmp_path: Path) -> None:
    cfg = scripted_pipeline(tmp_path, extra="cache: on\n")
    assert load_config(cfg).pipeline.cache is None  # the default file
    run_pipeline(cfg)
    assert (tmp_path / "runs" / "cache.sqlite").is_file()
    custom = scripted_pipeline(tmp_path, extra=f"cache: {tmp_path / 'c.sqlite'}\n")
    run_pipeline(custom, run_id="custom")
    assert (tmp_path / "c.sqlite").is_file()

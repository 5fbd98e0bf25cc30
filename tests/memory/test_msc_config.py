"""configs/msc-memory.yaml as shipped: it loads, and each of its data paths (relative to the
file, as every path in a pipeline file) finds the MSC episodes where ../shared/data/msc/ exists."""

from __future__ import annotations

import pytest
import yaml

from promptweave.config import load_config
from tests.helpers import REPO

CONFIG = REPO / "configs" / "msc-memory.yaml"
DATA = REPO.parent / "shared" / "data" / "msc" / "msc_session3.dev.jsonl"


def test_msc_config_finds_its_data() -> None:
    if not DATA.exists():
        pytest.skip(f"no MSC data at {DATA}")
    load_config(CONFIG, ["data.limit=3"])
    data = yaml.safe_load(CONFIG.read_text())["data"]
    paths = [*data["files"].values(), *data["systems"].values()]
    assert paths and all((CONFIG.parent / p).resolve() == DATA.resolve() for p in paths), paths

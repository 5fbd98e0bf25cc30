"""The Ray executor on a real local Ray instance (``ray.init(num_cpus=2)``, shared by the module)
against the real local test server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from promptweave import run_pipeline
from promptweave.pipelines.executors.ray_pool import batch_size
from promptweave.testing import serve, stats
from tests.executors.common import report, rows, run_dir, worker_pids
from tests.test_faults import make_pipeline

ray = pytest.importorskip("ray", reason="the Ray executor needs: pip install -e '.[ray]'")

RAY = ["executor.kind=ray", "executor.actors=2", "executor.num_cpus=0.5", "executor.chunk_size=10"]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_gives_the_local_results_and_report(tmp_path: Path) -> None:
    with serve(delay=0.01) as url:
        cfg = make_pipeline(tmp_path, url, 60, model=", max_concurrency: 4", extra="concurrency: 4\n")
        local = run_pipeline(cfg, [f"output={tmp_path / 'local'}"])
        calls_local = stats(url)["requests"]
        on_ray = run_pipeline(cfg, [f"output={tmp_path / 'ray'}", *RAY])
        calls_ray = stats(url)["requests"] - calls_local
    assert calls_local == calls_ray == 60
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")
    assert report(tmp_path / "ray") == report(tmp_path / "local")
    assert on_ray.ledger.to_dict() == local.ledger.to_dict()
    manifest = json.loads((run_dir(tmp_path / "ray") / "manifest.json").read_text())
    actors = manifest["executor"]["actors"]
    assert manifest["executor"]["kind"] == "ray" and len(actors) == 2
    assert sum(a["rows"] for a in actors) == 60 and all(a["rows"] > 0 for a in actors)  # both took work
    assert sum(a["batches"] for a in actors) >= 60 // batch_size(10)  # windows refilled a quarter at a time
    assert sum(a["usage"]["default"]["calls"] for a in actors) == 60


def test_the_cache_of_a_ray_run_serves_a_local_rerun_and_a_ray_rerun(tmp_path: Path) -> None:
    with serve(delay=0.0) as url:
        cfg = make_pipeline(tmp_path, url, 30)
        run_pipeline(cfg, RAY)
        assert stats(url)["requests"] == 30
        first = rows(tmp_path / "runs")
        for executor in (["executor.kind=local"], RAY):  # a fresh run directory, the same cache file
            for d in (tmp_path / "runs" / "faults").iterdir():
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()
            summary = run_pipeline(cfg, executor)
            assert stats(url)["requests"] == 30, executor  # zero model calls
            assert summary.ledger.cache_hits == 30 and summary.ledger.calls == 0
            assert rows(tmp_path / "runs") == [_as_cached(r) for r in first]


def _as_cached(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a run served from the cache writes it: the same answer, marked cached."""
    out = json.loads(json.dumps(record))
    out["outputs"]["hyp"]["call"].update(cached=True, attempts=0)
    return out


def test_killing_an_actor_halfway_writes_every_row_once(tmp_path: Path) -> None:
    n, chunk = 120, 10
    before = worker_pids()
    with serve(delay=0.1) as url:
        cfg = make_pipeline(tmp_path, url, n, model=", max_concurrency: 4", extra="concurrency: 4\n")
        results = tmp_path / "runs"
        outcome: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: outcome.update(s=run_pipeline(cfg, RAY)))
        thread.start()
        deadline = time.monotonic() + 120
        while _lines(results) < n // 3:
            assert time.monotonic() < deadline and thread.is_alive(), "the run made no progress"
            time.sleep(0.01)
        victims = sorted(worker_pids() - before)
        assert victims, "no actor process found"
        os.kill(victims[0], signal.SIGKILL)
        thread.join(120)
        calls = stats(url)["requests"]
    assert "s" in outcome, "the run did not finish"
    records = rows(results)
    assert sorted(r["key"] for r in records) == [f"r{i:04d}" for i in range(n)]  # every row, once
    assert all(r["status"] == "ok" for r in records)
    assert n <= calls <= n + chunk  # at most the window of rows the dead actor held was asked again
    manifest = json.loads((run_dir(results) / "manifest.json").read_text())
    assert sum(a["failed_sends"] for a in manifest["executor"]["actors"]) >= 1


def _lines(output: Path) -> int:
    try:
        return (run_dir(output) / "results.jsonl").read_bytes().count(b"\n")
    except (FileNotFoundError, ValueError):
        return 0

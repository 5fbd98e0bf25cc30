"""Crash safety: a run SIGKILLed halfway resumes to the same results, and pays again for at most
the requests that were in flight when it died."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from promptweave.models.cache import CompletionCache
from promptweave.testing import serve, stats
from tests.helpers import REPO, cli, read_jsonl, scripted_pipeline
from tests.test_faults import make_pipeline

ROWS, CONCURRENCY = 400, 8


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_halfway(cfg: Path, results: Path, at: int) -> int:
    """Start ``promptweave run`` and SIGKILL it once ``at`` rows are in results.jsonl."""
    proc = subprocess.Popen([sys.executable, "-m", "promptweave", "run", str(cfg), "--no-progress"],
                            cwd=cfg.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while _lines(results) < at:
            assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    return _lines(results)


def _outputs(cfg: Path) -> dict[str, Any]:
    (run_dir,) = (cfg.parent / "runs" / "faults").iterdir()
    return {r["key"]: (r["status"], r["fields"], r["outputs"]["hyp"]["value"], r["outputs"]["hyp"]["raw"])
            for r in read_jsonl(run_dir / "results.jsonl")}


def test_sigkill_halfway_then_resume(tmp_path: Path) -> None:
    model = f", max_concurrency: {CONCURRENCY}, max_retries: 0"
    with serve(delay=0.05) as url:
        crash = tmp_path / "crash"
        crash.mkdir()
        cfg = make_pipeline(crash, url, ROWS, model=model, extra=f"concurrency: {CONCURRENCY}\n")
        (run_dir,) = [crash / "runs" / "faults" / d for d in _run_dir_names(cfg)]
        at_kill = _kill_halfway(cfg, run_dir / "results.jsonl", ROWS // 2)
        assert ROWS // 2 <= at_kill < ROWS
        calls_before = stats(url)["requests"]

        resumed = cli("run", str(cfg), "--no-progress", "--json", cwd=crash)
        assert resumed.returncode == 0, resumed.stderr
        total_calls = stats(url)["requests"]

        # the same pipeline, never interrupted, fresh cache
        ref = tmp_path / "ref"
        ref.mkdir()
        ref_cfg = make_pipeline(ref, url, ROWS, model=model, extra=f"concurrency: {CONCURRENCY}\n")
        assert cli("run", str(ref_cfg), "--no-progress", cwd=ref).returncode == 0

    records = read_jsonl(run_dir / "results.jsonl")
    assert [r["key"] for r in records] == [f"r{i:04d}" for i in range(ROWS)]  # every row, once, in order
    assert all(r["status"] == "ok" for r in records)
    # paid again for at most what was in flight at the kill
    assert calls_before >= at_kill
    assert total_calls <= ROWS + CONCURRENCY, (calls_before, total_calls)
    assert _outputs(cfg) == _outputs(ref_cfg)


def _run_dir_names(cfg: Path) -> list[str]:
    from promptweave import load_config
    from promptweave.pipelines.engine import run_dir_for

    return [run_dir_for(load_config(cfg)).name]


def test_sigkill_keeps_cache_writes_older_than_the_flush_window(tmp_path: Path) -> None:
    """The cache batches writes for at most ``flush_after`` (50 ms); a process killed later keeps
    every completion it was given."""
    db = tmp_path / "cache.sqlite"
    code = (
        "import asyncio, os, signal, sys\n"
        "from promptweave.models.base import Completion\n"
        "from promptweave.models.cache import CompletionCache\n"
        "async def main():\n"
        "    cache = CompletionCache(sys.argv[1])\n"
        "    for i in range(300):\n"
        "        cache.put(f'k{i}', Completion(f'text {i}', 3, 2, 'stop'))\n"
        "        if i % 10 == 0:\n"
        "            await asyncio.sleep(0.001)\n"
        "    await asyncio.sleep(0.25)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(db)], cwd=REPO, capture_output=True, timeout=60)
    assert res.returncode == -signal.SIGKILL, res.stderr
    cache = CompletionCache(db)
    assert len(cache) == 300
    hit = cache.get("k299")
    assert hit is not None and hit.text == "text 299" and hit.completion_tokens == 2
    cache.close()


def test_cache_sees_its_own_pending_writes_and_flushes_on_close(tmp_path: Path) -> None:
    import asyncio
    import sqlite3

    from promptweave.models.base import Completion

    path = tmp_path / "c.sqlite"
    cache = CompletionCache(path, flush_after=3600)

    def on_disk() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    async def body() -> None:
        cache.put("a", Completion("A"))
        hit = cache.get("a")
        assert hit is not None and hit.text == "A"
        assert on_disk() == 0  # still in the batch

    asyncio.run(body())
    cache.close()
    assert on_disk() == 1


def test_two_processes_on_one_config_pay_for_each_row_once(tmp_path: Path) -> None:
    """Two ``promptweave run`` started together on one config: the run directory's lock lets one
    run; the other stops at once naming the holder (or, started late, finds every row done)."""
    rows = 24
    with serve(delay=0.1) as url:
        cfg = make_pipeline(tmp_path, url, rows, model=", max_concurrency: 2", extra="concurrency: 2\n")
        procs = [subprocess.Popen([sys.executable, "-m", "promptweave", "run", str(cfg), "--no-progress"],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        paid = stats(url)["requests"]
    codes = sorted(p.returncode for p in procs)
    assert paid == rows, (paid, outs)
    assert codes[0] == 0 and codes[1] in (0, 2), outs
    for proc, (_, err) in zip(procs, outs):
        if proc.returncode == 2:
            assert err.count("\n") == 1 and "Traceback" not in err, err
            # the holder is the other command's supervised worker process (or the command itself
            # with PROMPTWEAVE_SUPERVISE=0)
            holder = re.search(r"in use by PID (\d+) on host ", err)
            assert holder is not None and int(holder.group(1)) != proc.pid, err
    (run_dir,) = (tmp_path / "runs" / "faults").iterdir()
    records = read_jsonl(run_dir / "results.jsonl")
    assert [r["key"] for r in records] == [f"r{i:04d}" for i in range(rows)]


_KILL_AT = r"""
import os, signal, sys
import promptweave.pipelines.finish as finish
import promptweave.pipelines.store as store
AT = sys.argv[1]
real = finish.write_json_atomic
def killing(path, data):
    if str(path).endswith(AT):
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
finish.write_json_atomic = killing
real_scores = finish.write_scores  # scores.json is streamed, not written through write_json_atomic
def killing_scores(path, scores):
    if str(path).endswith(AT):
        os.kill(os.getpid(), signal.SIGKILL)
    real_scores(path, scores)
finish.write_scores = killing_scores
real_write = store.RunStore._write_file
def killing_compaction(self, keys, *, renumber):
    if AT == "compaction":
        os.kill(os.getpid(), signal.SIGKILL)
    real_write(self, keys, renumber=renumber)
store.RunStore._write_file = killing_compaction
sys.argv = ["promptweave", *sys.argv[2:]]
from promptweave.cli import main
main()
"""


@pytest.mark.parametrize("at", ["compaction", "scores.json", "manifest.json"])
def test_sigkill_in_the_finish_phase_loses_nothing(tmp_path: Path, at: str) -> None:
    """Killed while compacting or writing the closing files: every row is kept, and the same
    command finishes the run with no model call."""
    cfg = scripted_pipeline(tmp_path, rows=30, extra="concurrency: 8\nmetrics: [chrf]\n")
    assert cli("run", str(cfg), "--no-progress", cwd=tmp_path).returncode == 0
    data = tmp_path / "data.jsonl"  # one row edited: its new record makes compaction rewrite the file
    data.write_text(data.read_text().replace("Satz Nummer 3.", "Satz Nummer drei."))
    # in-process: the patched writers must be the ones that run (a supervised child would not see them)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, at, "run", str(cfg), "--no-progress"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PROMPTWEAVE_SUPERVISE": "0"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir,) = (tmp_path / "runs" / "scripted").iterdir()
    assert {r["key"] for r in read_jsonl(run_dir / "results.jsonl")} == {str(i) for i in range(30)}
    again = cli("run", str(cfg), "--no-progress", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["ran"], summary["usage"]["calls"]) == (0, 0)
    assert (run_dir / "report.md").exists() and json.loads((run_dir / "manifest.json").read_text())["name"]
    rows = read_jsonl(run_dir / "results.jsonl")
    assert [r["key"] for r in rows] == [str(i) for i in range(30)] and "drei" in rows[3]["fields"]["source"]

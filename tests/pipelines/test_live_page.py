"""report.html's own process (pipelines/livepage.py): it takes the page's rows while the run goes
on, and the page it writes is the page written from the records in the file. Whenever what it
took is in doubt, the finish reads the rows itself, and no process is left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from promptweave import run_pipeline
from promptweave.pipelines import engine, finish, livepage, scoring
from tests.helpers import write_jsonl
from tests.pipelines.test_finish_page import _reaped as _waited_for
from tests.pipelines.test_finish_page import serial_page, steady
from tests.pipelines.test_streaming_scores import multisystem_config


def _gone(pid: int) -> None:
    """Wait until process ``pid`` has exited (a zombie: its sockets are closed), not reaping it."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not end")


def _reaped(pid: int) -> bool:
    """Whether the page's process ``pid`` has ended and been waited for, once the processes that
    said they were done are waited for (the finish leaves that to the next page's start)."""
    _gone(pid)
    livepage.reap_late()
    return _waited_for(pid)


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Runs of any size get the page's process; what each finish used is recorded: ``pages``
    (the processes started), ``fallback`` (the finish read the rows itself)."""
    monkeypatch.setattr(scoring, "POOL_ROWS", 1)
    monkeypatch.setattr(finish, "FORK_ROWS", 10)
    seen: dict[str, list[Any]] = {"pages": [], "fallback": []}
    real_start = livepage.LivePage.start.__func__  # type: ignore[attr-defined]

    def start(cls: type, spec: Any, rows: int = 0) -> Any:
        page = real_start(cls, spec, rows)
        seen["pages"].append(page)
        return page

    monkeypatch.setattr(livepage.LivePage, "start", classmethod(start))
    real_gather = finish._PageRows.gather

    def gather(self: finish._PageRows) -> None:
        seen["fallback"].append(1)
        real_gather(self)

    monkeypatch.setattr(finish._PageRows, "gather", gather)
    real_read = finish._PageRows.read

    def read(self: finish._PageRows) -> None:
        seen["fallback"].append(1)
        real_read(self)

    monkeypatch.setattr(finish._PageRows, "read", read)
    return seen


@pytest.mark.parametrize("report_rows", [10**6, 100])
def test_the_page_of_the_live_process_is_the_page_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              live: dict[str, list[Any]], report_rows: int) -> None:
    """Failed rows, judges, a human score, several systems, a page capped below the run, and a
    resume whose kept rows the process reads from the file at the start."""
    for mod in (scoring, engine, finish):
        monkeypatch.setattr(mod, "REPORT_ROWS", report_rows)
    cfg = multisystem_config(tmp_path, 30)
    d = run_pipeline(cfg, run_id="r").run_dir
    first = steady((d / "report.html").read_text(encoding="utf-8"))
    assert len(live["pages"]) == 1 and live["fallback"] == [] and _reaped(live["pages"][0].pid)
    assert multisystem_config(tmp_path, 45) == cfg  # the same config, 15 more data rows
    again = run_pipeline(cfg, run_id="r")
    assert again.skipped == 90 and again.ran == 45
    assert len(live["pages"]) == 2 and live["fallback"] == []
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    assert "parse failures" in streamed and "ref-copy" in streamed and "Judges vs humans" in streamed
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed
    assert first != streamed
    saved = json.loads((d / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))
    assert set(saved["tests"]["tests"]["bleu"]) == {"jdexplore", "ref-copy", "degraded"}  # the parent's tests


def test_retried_errors_are_taken_in_their_new_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      live: dict[str, list[Any]]) -> None:
    cfg = multisystem_config(tmp_path, 20)
    d = run_pipeline(cfg, run_id="r").run_dir
    again = run_pipeline(cfg, run_id="r", retry_errors=True)
    assert again.ran == 7  # the rows whose first calls failed
    assert live["fallback"] == [] and len(live["pages"]) == 2
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed


def test_rows_whose_place_moved_send_the_finish_back_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 live: dict[str, list[Any]]) -> None:
    """The data's rows reordered between runs: the kept records hold their old places (the
    compaction gives them their new ones), so the process's rows are not the file's."""
    cfg = multisystem_config(tmp_path, 12)
    d = run_pipeline(cfg, run_id="r").run_dir
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()]
    write_jsonl(tmp_path / "d.jsonl", rows[::-1] + [{**rows[0], "id": "new"}])
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 3 and len(live["pages"]) == 2 and live["fallback"] == [1]
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed


@pytest.mark.parametrize("when", ["open_file", "versions", "taken", "render"])
def test_a_page_process_that_dies_costs_only_its_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       live: dict[str, list[Any]], when: str) -> None:
    """Killed as the rows start, as the finish starts, as it asks whether the rows taken are the
    file's (the answer may be in the socket already), or before it works out the tests and writes
    the page: the finish reads the rows itself."""
    import signal

    target = getattr(livepage.LivePage, when)

    def killed_first(self: livepage.LivePage, *a: Any) -> Any:
        os.kill(self.pid, signal.SIGKILL)
        _gone(self.pid)
        return target(self, *a)

    monkeypatch.setattr(livepage.LivePage, target.__name__, killed_first)
    d = run_pipeline(multisystem_config(tmp_path, 15), run_id="r").run_dir
    assert live["fallback"] == [1] and not live["pages"][0].alive and _reaped(live["pages"][0].pid)
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    monkeypatch.undo()
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed


def test_a_run_that_fails_leaves_no_page_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 live: dict[str, list[Any]]) -> None:
    from promptweave.pipelines.rundir import RunDirError
    from promptweave.pipelines.store import RunStore

    real = RunStore.append
    calls: list[int] = []

    def append(self: RunStore, record: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 5:
            raise RunDirError("results.jsonl: No space left on device")
        return real(self, record)

    monkeypatch.setattr(RunStore, "append", append)
    with pytest.raises(RunDirError):
        run_pipeline(multisystem_config(tmp_path, 10), run_id="r")
    assert len(live["pages"]) == 1 and _reaped(live["pages"][0].pid) and not live["pages"][0].alive


def test_a_finish_with_nothing_to_run_stops_the_process(tmp_path: Path, live: dict[str, list[Any]]) -> None:
    cfg = multisystem_config(tmp_path, 10)
    d = run_pipeline(cfg, run_id="r").run_dir
    (d / finish.finishcache.STATE_FILE).unlink()
    (d / ".resume.json").unlink()
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and (d / "report.html").exists()
    assert len(live["pages"]) == 2 and all(_reaped(p.pid) and not p.alive for p in live["pages"])


@pytest.mark.parametrize("after_tests", [False, True])
def test_a_page_process_that_dies_writing_the_page_leaves_none_and_a_rerun_writes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live: dict[str, list[Any]], after_tests: bool) -> None:
    """As a forked page process (tests/pipelines/test_finish_page.py): the run's results stand, no
    page of the rows as they were is left, the next run writes it. Dead before it handed over
    the tests, the saved state keeps the rows' statistics instead (for the next page's tests)."""
    from promptweave.report import build

    if after_tests:
        monkeypatch.setattr(build, "segment_blob", lambda *a: os._exit(3))
    else:
        monkeypatch.setattr(livepage._Child, "_write", lambda self, *a: os._exit(3))
    cfg = multisystem_config(tmp_path, 15)
    d = run_pipeline(cfg, run_id="r").run_dir
    assert json.loads((d / "scores.json").read_text(encoding="utf-8"))["rows"] == 45
    assert not (d / "report.html").exists() and live["fallback"] == [] and _reaped(live["pages"][0].pid)
    saved = json.loads((d / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))
    if after_tests:
        assert set(saved["tests"]["tests"]["bleu"]) == {"jdexplore", "ref-copy", "degraded"} and not saved["stats"]
    else:
        scored = json.loads((d / "scores.json").read_text(encoding="utf-8"))["segments"]
        assert not saved["tests"] and set(scored) <= set(saved["stats"]["bleu"])
    monkeypatch.undo()
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and "95% bootstrap interval" in (d / "report.html").read_text(encoding="utf-8")


KILLED_MID_RUN = """
import os, signal, sys
from promptweave.pipelines import livepage, store
real_start, real_append = livepage.LivePage.start.__func__, store.RunStore.append
def start(cls, spec, rows=0):
    page = real_start(cls, spec, rows)
    print(page.pid, flush=True)
    return page
livepage.LivePage.start = classmethod(start)
calls = []
def append(self, record):
    calls.append(1)
    if len(calls) == 20:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_append(self, record)
store.RunStore.append = append
from promptweave import run_pipeline
run_pipeline(sys.argv[1], run_id="r")
"""


def test_a_run_killed_mid_way_leaves_no_page_process_and_a_rerun_writes_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the run: its page's process sees the socket end (no statistics worker holds the
    parent's end open) and leaves, and so do the statistics workers (they stayed behind for good,
    holding the output pipe: this test's run would then never return); the same command finishes
    the run and writes the page."""
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    cfg = multisystem_config(tmp_path, 20)
    env = {**os.environ, "PYTHONPATH": str(repo), "PROMPTWEAVE_POOL_ROWS": "1"}
    res = subprocess.run([sys.executable, "-c", KILLED_MID_RUN, str(cfg)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    _gone(int(res.stdout.split()[0]))  # raises if it is still running after 10 s
    monkeypatch.setattr(scoring, "POOL_ROWS", 1)
    d = run_pipeline(cfg, run_id="r").run_dir
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed


def test_a_page_that_cannot_be_written_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   live: dict[str, list[Any]]) -> None:
    """report.html is a directory: the page's process says so (as a forked one does); the
    finishing process adds no second warning, and the run's results stand."""
    import logging

    d = tmp_path / "runs" / "stream-eval" / "r"
    (d / "report.html").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="promptweave"):
        run = run_pipeline(multisystem_config(tmp_path, 10), run_id="r")
    assert run.run_dir == d and (d / "scores.json").exists() and (d / "report.html").is_dir()
    assert len(live["pages"]) == 1 and live["fallback"] == [] and _reaped(live["pages"][0].pid)
    assert "its process failed" not in caplog.text


@pytest.mark.parametrize("when", ["open_file", "render"])
def test_a_page_process_that_stalls_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture,
                                               live: dict[str, list[Any]], when: str) -> None:
    """Stopped (SIGSTOP) as the rows start: the parent waits TIMEOUT at most, ends it, and the
    finish writes the page from the file. Stopped after it took the rows, before it works out the
    tests and writes the page: the finish ends it after one TIMEOUT (not a second one for its
    end), as it would a page's process that died there (no page, the results stand, the next run
    writes it)."""
    import logging
    import signal

    caplog.set_level(logging.WARNING, logger="promptweave")

    monkeypatch.setattr(livepage, "TIMEOUT", 1.0)
    target = getattr(livepage.LivePage, when)

    def stopped_first(self: livepage.LivePage, *a: Any) -> Any:
        os.kill(self.pid, signal.SIGSTOP)
        return target(self, *a)

    monkeypatch.setattr(livepage.LivePage, when, stopped_first)
    cfg = multisystem_config(tmp_path, 12)
    d = run_pipeline(cfg, run_id="r").run_dir
    assert not live["pages"][0].alive and _reaped(live["pages"][0].pid)
    assert json.loads((d / "scores.json").read_text(encoding="utf-8"))["rows"] == 36
    assert "did not end" not in caplog.text  # waited on once
    monkeypatch.undo()
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    if when == "open_file":
        assert live["fallback"] == [1]
        assert steady(serial_page(d)) == steady((d / "report.html").read_text(encoding="utf-8"))
    else:
        assert live["fallback"] == [] and not (d / "report.html").exists()
        assert run_pipeline(cfg, run_id="r").ran == 0 and (d / "report.html").exists()


def test_the_bootstrap_is_drawn_for_the_segments_the_tests_resample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     live: dict[str, list[Any]]) -> None:
    """The page's process draws the bootstrap's counts ahead, for as many segments as its rows
    say the tests will resample (``draw_size``): one system with failed rows, and three systems.
    Its page, tests included, is the page of the file."""
    from promptweave.report.build import draw_size
    from promptweave.report.rundata import load_run

    write_jsonl(tmp_path / "one.jsonl", [{"source": f"Satz {i} ist hier.", "reference": f"Sentence {i} is here."}
                                         for i in range(40)])
    one = tmp_path / "one.yaml"
    one.write_text(f"""
name: one
model: {{backend: scripted, max_retries: 0, options: {{fail_first: 5, default: '{{{{echo}}}}'}}}}
data: {{path: {tmp_path / 'one.jsonl'}, src_lang: de, tgt_lang: en}}
steps:
  - id: hyp
    translate: {{prompt: tsp}}
metrics: [bleu, chrf]
cache: 'off'
output: {tmp_path / 'runs'}
""")
    for cfg, systems in ((one, 1), (multisystem_config(tmp_path, 15), 3)):
        d = run_pipeline(cfg, run_id="r").run_dir
        saved = json.loads((d / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))["tests"]["tests"]
        assert len(saved["bleu"]) == systems
        n = {r["n"] for r in saved["bleu"].values()}
        assert n == {draw_size(load_run(d).page_data(browse=False))}
        assert 0 < n.pop() < (40 if systems == 1 else 15)  # failed rows are not resampled
        streamed = steady((d / "report.html").read_text(encoding="utf-8"))
        with monkeypatch.context() as m:
            m.setattr(finish, "FORK_ROWS", 10**9)
            assert steady(serial_page(d)) == streamed
    assert live["fallback"] == [] and len(live["pages"]) == 2


def test_a_page_process_that_falls_behind_never_holds_up_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  live: dict[str, list[Any]]) -> None:
    """Stopped as the rows start, with a small socket: the rows' messages wait in the parent up to
    BEHIND bytes, never blocking the loop; past that the process is dropped and the finish reads
    the rows itself."""
    import signal
    import socket
    import time

    monkeypatch.setattr(livepage, "BEHIND", 512)
    monkeypatch.setattr(livepage, "BATCH", 8)  # many small messages: each takes a socket buffer's overhead
    real_open = livepage.LivePage.open_file

    def open_then_stop(self: livepage.LivePage, path: Path) -> None:
        real_open(self, path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024)
        os.kill(self.pid, signal.SIGSTOP)

    monkeypatch.setattr(livepage.LivePage, "open_file", open_then_stop)
    t0 = time.monotonic()
    d = run_pipeline(multisystem_config(tmp_path, 120), run_id="r").run_dir
    assert time.monotonic() - t0 < livepage.TIMEOUT  # (the default: 120 s) no send waited on it
    assert live["fallback"] == [1] and not live["pages"][0].alive and _reaped(live["pages"][0].pid)
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    monkeypatch.undo()
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed


def test_a_done_page_process_is_waited_for_by_the_next_start(tmp_path: Path, live: dict[str, list[Any]]) -> None:
    """The finish does not wait for the exit of a page process that said it was done; the next
    page's start waits for it (no zombie outlives that)."""
    cfg = multisystem_config(tmp_path, 10)
    run_pipeline(cfg, run_id="a")
    first = live["pages"][0].pid
    _gone(first)
    run_pipeline(cfg, run_id="b")
    assert len(live["pages"]) == 2 and _waited_for(first)

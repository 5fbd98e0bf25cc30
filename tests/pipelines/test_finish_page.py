"""report.html written by two processes (a forked child writes the page while the finishing run
works out its significance tests and hands them over) is the page one process writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptweave import run_pipeline
from promptweave.errors import PromptweaveError
from promptweave.pipelines import finish
from promptweave.report import build
from tests.pipelines.test_streaming_scores import multisystem_config


def serial_page(run_dir: Path) -> str:
    """The page as one process writes it, from the state the finish saved."""
    saved = json.loads((run_dir / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))
    scores = {**saved["scores"], "segments": saved["segments"]}
    (run_dir / "report.html").unlink()
    finish._write_html(run_dir, scores, saved["stats"], {})
    return (run_dir / "report.html").read_text(encoding="utf-8")


def steady(text: str) -> str:  # the finish time differs between runs
    return re.sub(r"finished [0-9T:+\-]+", "finished T", text)


@pytest.mark.parametrize("parent_fails", [False, True])
def test_page_shared_by_two_processes_equals_the_page_of_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             parent_fails: bool) -> None:
    monkeypatch.setattr(finish, "FORK_ROWS", 10)
    calls: list[int] = []
    real = build.page_tests

    def page_tests(*a: object, **k: object) -> dict:
        calls.append(1)
        if parent_fails:  # the child works them out itself
            raise MemoryError("no room")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(build, "page_tests", page_tests)
    cfg = multisystem_config(tmp_path, 60)
    run = run_pipeline(cfg, run_id="r")
    assert calls == [1]  # the parent's share ran (so the page was written by a child)
    d = run.run_dir
    forked = (d / "report.html").read_text(encoding="utf-8")
    saved = json.loads((d / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))
    if parent_fails:
        assert saved["tests"] == {}  # nothing cached: a later page works them out again
    else:
        assert saved["tests"]["key"]["columns"] == ["bleu", "chrf", "ter", "da", "mqm"]
        assert set(saved["tests"]["tests"]["bleu"]) == {"jdexplore", "ref-copy", "degraded"}
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == steady(forked)
    assert "ref-copy" in forked and "95% bootstrap interval" in forked


def _page_processes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the page processes the finish forks (filled as it forks them)."""
    import os

    pids: list[int] = []
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(finish.os, "fork", fork)
    return pids


def _reaped(pid: int) -> bool:
    """Whether process ``pid`` (a child of this one) has ended and been waited for."""
    import os

    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_interrupted_finish_leaves_no_page_process_and_a_rerun_finishes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finish, "FORK_ROWS", 10)
    real = build.page_tests

    def interrupted(*a: object, **k: object) -> dict:
        raise KeyboardInterrupt  # Ctrl-C while the parent works out the page's tests

    monkeypatch.setattr(build, "page_tests", interrupted)
    pids = _page_processes(monkeypatch)
    cfg = multisystem_config(tmp_path, 20)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, run_id="r")
    # the page's process was stopped and reaped: nothing waits on a pipe no one will close
    assert len(pids) == 1 and _reaped(pids[0])
    d = tmp_path / "runs" / "stream-eval" / "r"
    assert not (d / "scores.json").exists()
    monkeypatch.setattr(build, "page_tests", real)
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and (d / "scores.json").exists() and (d / "report.html").exists()


def test_a_dying_page_process_neither_hangs_the_finish_nor_loses_its_results(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(finish, "FORK_ROWS", 10)
    monkeypatch.setattr(finish, "_write_html", lambda *a, **k: os._exit(3))  # only the forked child calls it
    pids = _page_processes(monkeypatch)
    run = run_pipeline(multisystem_config(tmp_path, 20), run_id="r")
    d = Path(run.run_dir)
    assert json.loads((d / "scores.json").read_text(encoding="utf-8"))["rows"] == 60
    assert (d / "report.md").exists() and len(pids) == 1 and _reaped(pids[0])
    saved = json.loads((d / finish.finishcache.STATE_FILE).read_text(encoding="utf-8"))
    # no page, not even an earlier one; the tests the parent worked out are kept for the next
    assert not (d / "report.html").exists()
    assert set(saved["tests"]["tests"]["bleu"]) == {"jdexplore", "ref-copy", "degraded"}
    monkeypatch.undo()
    again = run_pipeline(multisystem_config(tmp_path, 20), run_id="r")
    assert again.ran == 0 and "95% bootstrap interval" in (d / "report.html").read_text(encoding="utf-8")


def test_a_finish_that_rewrites_the_results_drops_the_old_page_first(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A page that cannot be written leaves none: never the page of the rows as they were."""
    cfg = multisystem_config(tmp_path, 8)
    d = Path(run_pipeline(cfg, run_id="r").run_dir)
    assert (d / "report.html").exists()

    def fail(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "write_page", fail)
    monkeypatch.setattr(finish.finishcache, "load", lambda *a: None)  # scored again
    run_pipeline(cfg, run_id="r")
    assert not (d / "report.html").exists() and (d / "scores.json").exists()
    monkeypatch.undo()
    run_pipeline(cfg, run_id="r")
    assert (d / "report.html").exists()


def test_a_finish_state_that_does_not_fit_is_scored_again(tmp_path: Path) -> None:
    cfg = multisystem_config(tmp_path, 12)
    d = Path(run_pipeline(cfg, run_id="r").run_dir)
    scores = (d / "scores.json").read_bytes()
    state = d / finish.finishcache.STATE_FILE
    saved = json.loads(state.read_text(encoding="utf-8"))
    saved["examples"] = ["not", "examples"]  # the fingerprint still matches: only the payload is damaged
    state.write_text(json.dumps(saved), encoding="utf-8")
    (d / "report.md").unlink()
    again = run_pipeline(cfg, run_id="r")
    assert again.ran == 0 and (d / "scores.json").read_bytes() == scores and (d / "report.md").exists()


def test_lone_surrogates_in_the_data_are_finished_and_resumed(tmp_path: Path) -> None:
    from tests.helpers import write_jsonl

    rows = [{"id": f"s{i}\ud800", "source": f"Quelle {i} \ud800 </script>", "reference": f"Sentence {i}.",
             "translations": [{"system": s, "hypothesis": f"Sentence {i} {s}.", "mqm": -i} for s in ("a", "b")]}
            for i in range(6)]
    # written as JSON escapes (ensure_ascii), the way a JSON file holds a lone surrogate
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # the judge's prompt holds only the hypothesis (a lone surrogate in a prompt and the model
    # cache: tests/models/test_cache.py)
    (tmp_path / "da.yaml").write_text("messages:\n  - {role: user, content: 'Score: {{ hypothesis }}'}\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"""
name: surrogates
model: {{backend: scripted, options: {{default: '70'}}}}
data: {{path: {tmp_path / 'd.jsonl'}, key: id, explode: translations, src_lang: de, tgt_lang: en}}
steps:
  - id: da
    generate: {{template: {tmp_path / 'da.yaml'}, parser: number}}
metrics: [bleu]
scoring: {{hypothesis: hypothesis, group_by: system, human: mqm}}
output: {tmp_path / 'runs'}
""", encoding="utf-8")
    d = Path(run_pipeline(cfg, run_id="r").run_dir)
    scores = json.loads((d / "scores.json").read_text(encoding="utf-8"))
    assert scores["rows"] == 12 and "s0\ud800:a" in scores["segments"]  # the key as the records hold it
    for name in ("manifest.json", finish.finishcache.STATE_FILE):
        json.loads((d / name).read_text(encoding="utf-8"))
    assert "\\ud800" in (d / "report.md").read_text(encoding="utf-8")
    assert "Quelle 0 \ufffd" in (d / "report.html").read_text(encoding="utf-8")
    for name in (finish.finishcache.STATE_FILE, ".resume.json"):
        (d / name).unlink()
    assert run_pipeline(cfg, run_id="r").ran == 0  # the stored records are read back, not re-run
    write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "source": "s", "reference": "r", "translations": [
        {"system": "a", "hypothesis": "h", "mqm": 10 ** 400}]}])
    with pytest.raises(PromptweaveError, match=r"'mqm' is 1000.*not a finite number"):
        run_pipeline(cfg, run_id="r2")


@pytest.mark.parametrize("report_rows", [10**6, 100])
def test_page_data_from_parts_in_three_processes_equals_the_page_read_from_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report_rows: int) -> None:
    """With a statistics pool, what report.html needs of its rows is worked out in four parts
    (two by the pool's workers, two by the finishing process, from byte ranges of results.jsonl): that
    page, for a run with failed rows, judges, a human score, several systems, a resume that adds
    rows and a page capped below the run, is the page written from the records in the file."""
    from promptweave.pipelines import engine, scoring

    monkeypatch.setattr(finish, "FORK_ROWS", 10)
    monkeypatch.setattr(scoring, "POOL_ROWS", 1)
    monkeypatch.setenv("PROMPTWEAVE_LIVE_PAGE", "0")  # (tests/pipelines/test_live_page.py)
    for mod in (scoring, engine, finish):
        monkeypatch.setattr(mod, "REPORT_ROWS", report_rows)
    parts: list[int] = []
    real = finish._PageRows._page

    def _page(self: finish._PageRows) -> object:
        ranges = self.store.head_ranges(report_rows, 4)
        parts.append(len(ranges))
        got = real(self)
        n = len(got.labels) if got is not None else -1
        assert [first for _, _, first in ranges] == [0, n // 4, n // 2, 3 * n // 4]
        return got

    monkeypatch.setattr(finish._PageRows, "_page", _page)
    reads: list[int] = []
    monkeypatch.setattr(finish._PageRows, "read", lambda self: reads.append(1))
    cfg = multisystem_config(tmp_path, 30)
    d = run_pipeline(cfg, run_id="r").run_dir
    first = steady((d / "report.html").read_text(encoding="utf-8"))
    assert parts == [4] and reads == []
    assert multisystem_config(tmp_path, 45) == cfg  # the same config, 15 more data rows
    again = run_pipeline(cfg, run_id="r")
    assert again.skipped == 90 and again.ran == 45
    assert parts == [4, 4] and reads == []
    streamed = steady((d / "report.html").read_text(encoding="utf-8"))
    assert "parse failures" in streamed and "ref-copy" in streamed and "Judges vs humans" in streamed
    monkeypatch.setattr(finish, "FORK_ROWS", 10**9)
    assert steady(serial_page(d)) == streamed
    assert first != streamed



def test_a_results_file_out_of_data_order_has_no_byte_ranges(tmp_path: Path) -> None:
    """head_ranges only describes a compacted file: records back to back in data order."""
    from promptweave.pipelines.store import RunStore

    d = Path(run_pipeline(multisystem_config(tmp_path, 10), run_id="r").run_dir)
    store = RunStore(d)
    store.open()
    try:
        ranges = store.head_ranges(30, 3)
        assert [r[2] for r in ranges] == [0, 10, 20] and ranges[0][0] == 0
        assert ranges[-1][1] == (d / "results.jsonl").stat().st_size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        rec = store.get(store._index.keys[0])
        rec["outputs"]["da"]["value"] = 1.5
        store.append(rec)  # the first row again, at the end of the file
        assert store.head_ranges(30, 3) == []
    finally:
        store.close()

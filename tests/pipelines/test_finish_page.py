"""report.html written by two processes (a forked child writes the page while the finishing run
works out its significance tests and hands them over) is the page one process writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promptweave import run_pipeline
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

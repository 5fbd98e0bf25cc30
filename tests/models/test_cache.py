"""The completion cache checks its file once at open and, when it fails later, warns once and
steps aside: the run goes on, no row sees an exception."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from promptweave import run_pipeline
from promptweave.models.base import Completion
from promptweave.models.cache import CacheError, CompletionCache
from tests.helpers import read_jsonl, scripted_pipeline


def test_a_cache_that_fails_mid_run_warns_once_and_turns_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = CompletionCache(tmp_path / "c.sqlite")
    cache.put("a", Completion("A"))
    cache.flush()
    cache._db.close()  # the file is gone from under us: every later use of the connection fails
    with caplog.at_level(logging.WARNING, logger="promptweave.cache"):
        assert cache.get("a") is None
        cache.put("b", Completion("B"))
        cache.flush()
        assert cache.get("b") is None
        cache.close()
    warnings = [r for r in caplog.records if r.name == "promptweave.cache"]
    assert len(warnings) == 1 and "goes on without it" in warnings[0].getMessage()


def test_a_run_survives_its_cache_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    class Failing(CompletionCache):
        """Loses its connection after the third completion, as a cache on a dying disk would."""

        puts = 0

        def put(self, key: str, c: Completion) -> None:
            super().put(key, c)
            Failing.puts += 1
            if Failing.puts == 3:
                self.flush()
                self._db.close()

    monkeypatch.setattr("promptweave.pipelines.engine.CompletionCache", Failing)
    cfg = scripted_pipeline(tmp_path, rows=8, extra="concurrency: 1\n")
    with caplog.at_level(logging.WARNING):
        summary = run_pipeline(cfg)
    assert summary.errors == 0 and summary.ran == 8
    assert len([r for r in caplog.records if r.name == "promptweave.cache"]) == 1
    (run_dir,) = (tmp_path / "runs" / "scripted").iterdir()
    assert all(r["status"] == "ok" for r in read_jsonl(run_dir / "results.jsonl"))


def test_pending_writes_of_a_running_loop_fail_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The batch is written from a timer on the event loop: a failure there is the same one
    warning, not an 'Exception in callback' traceback."""
    cache = CompletionCache(tmp_path / "c.sqlite", flush_after=0.01)

    async def body() -> None:
        cache._db.close()
        cache.put("k", Completion("v"))
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING):
        asyncio.run(body())
    assert not [r for r in caplog.records if "Exception in callback" in r.getMessage()]
    assert len([r for r in caplog.records if r.name == "promptweave.cache"]) == 1


@pytest.mark.parametrize("setup, expect", [
    (lambda p: p.write_bytes(b"\x00garbage" * 500), "not an SQLite file"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE notes (t)").connection.commit(), "something else"),
    (lambda p: p.mkdir(), "directory"),
])
def test_a_file_that_is_not_a_cache_is_refused_at_open(tmp_path: Path, setup: Callable[[Path], object],
                                                       expect: str) -> None:
    path = tmp_path / "c.sqlite"
    setup(path)
    with pytest.raises(CacheError, match=expect):
        CompletionCache(path)


def test_an_existing_cache_of_ours_is_reused(tmp_path: Path) -> None:
    first = CompletionCache(tmp_path / "c.sqlite")
    first.put("k", Completion("v", 1, 2, "stop"))
    first.close()
    again = CompletionCache(tmp_path / "c.sqlite")
    hit = again.get("k")
    assert hit is not None and hit.text == "v" and hit.completion_tokens == 2
    again.close()


def test_a_reply_with_a_lone_surrogate_is_cached_and_comes_back_the_same(tmp_path: Path) -> None:
    # data with a "\ud800" JSON escape reaches the prompt; a model echoing it made the cache's
    # write (SQLite text is UTF-8) fail at the end of the run with a traceback
    from promptweave.models.base import Message
    from promptweave.models.cache import key_from_parts

    text = "Hallo \ud800 Welt \U0001f600"
    key = key_from_parts("{}", "{}", [Message("user", text)])
    assert key != key_from_parts("{}", "{}", [Message("user", "Hallo \ufffd Welt \U0001f600")])
    assert key_from_parts("{}", "{}", [Message("user", "plain")]) == key_from_parts("{}", "{}", [Message("user", "plain")])
    first = CompletionCache(tmp_path / "c.sqlite")
    first.put(key, Completion(text, 1, 2, "stop"))
    first.put("valid", Completion("ok ü", 1, 1, "stop"))
    first.close()
    again = CompletionCache(tmp_path / "c.sqlite")
    hit, plain = again.get(key), again.get("valid")
    assert hit is not None and hit.text == text and plain is not None and plain.text == "ok ü"
    again.close()
    # stored as text wherever it is valid UTF-8 (existing caches read the same)
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT typeof(text) FROM completions WHERE key='valid'").fetchone() == ("text",)
    db.close()

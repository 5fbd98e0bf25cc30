"""Content-addressed SQLite cache of model completions.

The key is a SHA-256 over the backend identity (backend, model, base_url, ...), the sampling
parameters and the messages. Identity objects never carry secrets, so no API key reaches a key
or a row. Writes are batched into one transaction every 50 ms (WAL, synchronous=NORMAL): a run
killed mid-way keeps every completion it paid for but the last 50 ms.

Opening checks the file once: a file that is not SQLite, an SQLite database of something else,
or one this process cannot write is a :class:`CacheError` before the first call. A cache that
fails later (disk full, the file replaced) logs one warning and turns itself off for the rest
of the run; the rows are unharmed, since results are written apart from the cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from ..errors import PromptweaveError
from .base import Completion, GenParams, Message

log = logging.getLogger("promptweave.cache")
_COLUMNS = ["key", "text", "prompt_tokens", "completion_tokens", "finish_reason", "created"]
_APP_ID = 0x70774343  # "pwCC" in PRAGMA application_id marks a promptweave cache


class CacheError(PromptweaveError):
    """The cache file cannot serve as a cache (the message says why)."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(identity: dict[str, Any], params: GenParams, messages: list[Message]) -> str:
    """SHA-256 of the sorted-key JSON of ``{"identity", "messages", "params"}``."""
    return key_from_parts(canonical_json(identity), params_json(params), messages)


def params_json(params: GenParams) -> str:
    return canonical_json(params.model_dump(exclude_none=True))


def key_from_parts(identity_json: str, params_json: str, messages: list[Message]) -> str:
    """:func:`cache_key` from pre-serialised identity and params (a runtime serialises those
    once, not per request). The blob is byte-for-byte what ``json.dumps(..., sort_keys=True)``
    writes for the whole payload: its top-level keys sort as identity < messages < params."""
    blob = ('{"identity":' + identity_json + ',"messages":' + canonical_json([_keyable(m) for m in messages])
            + ',"params":' + params_json + "}")
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # valid text: plain UTF-8


def _keyable(m: Message) -> dict[str, Any]:
    """The message as it enters a key: an inline image is the SHA-256 of its bytes, never the
    bytes (a key must stay small, and the same picture re-encoded as the same base64 is equal)."""
    if isinstance(m.content, str):
        return m.to_dict()
    parts = []
    for part in m.content:
        url = part.get("image_url", {}).get("url") if isinstance(part, dict) and part.get("type") == "image_url" else None
        if isinstance(url, str) and url.startswith("data:"):
            raw = url.partition(",")[2]
            try:
                data = base64.b64decode(raw, validate=False)
            except (ValueError, binascii.Error):
                data = raw.encode("utf-8")
            detail = {k: v for k, v in part["image_url"].items() if k != "url"}
            part = {"type": "image_url", "image_url": {**detail, "sha256": hashlib.sha256(data).hexdigest()}}
        parts.append(part)
    return {"role": m.role, "content": parts}


_INSERT = "INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?)"
_SELECT = "SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM completions WHERE key=?"


class CompletionCache:
    """A small SQLite key-value store; safe to share between threads of one process.

    Writes are batched: :meth:`put` keeps the row in memory (where :meth:`get` sees it at once)
    and one transaction writes the batch within ``flush_after`` seconds, or when ``max_pending``
    rows wait, or on :meth:`flush` / :meth:`close` / interpreter exit. A commit per row cost
    ~100us of a request's ~4ms of client CPU; batching brings that to ~10us. A SIGKILLed run
    loses at most the last ``flush_after`` seconds of completions, and only those of rows not yet
    in ``results.jsonl`` need asking again.
    """

    def __init__(self, path: str | Path, *, flush_after: float = 0.05, max_pending: int = 256) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_after, self.max_pending = flush_after, max_pending
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._off = False
        if self.path.is_dir():
            raise CacheError("it is a directory, not a file")
        if self.path.exists() and not self.path.is_file():  # a FIFO or device would block or be ruined
            raise CacheError("it is not a regular file")
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise CacheError(_why(exc)) from None
        try:
            self._setup_when_free()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise CacheError(_why(exc)) from None
        except BaseException:
            self._db.close()
            raise
        # a process that ends without close() still writes what it was given
        self._finalizer = weakref.finalize(self, _write, self._db, self._lock, self._pending, True)

    def _setup_when_free(self, wait: float = 30.0) -> None:
        """:meth:`_setup`, waiting while another process holds the file: runs that share a
        cache start together, and SQLite answers "locked" at once (without its busy timeout)
        to a second connection switching the journal mode or starting its first write."""
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            try:
                return self._setup()
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _setup(self) -> None:
        """Check the file is ours (or empty) and writable, then create the table."""
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, _APP_ID):
            raise CacheError(f"it is an SQLite database of another application (application_id {app_id:#x})")
        if tables and "completions" not in tables:
            raise CacheError(f"it is an SQLite database of something else (tables: {', '.join(sorted(tables))[:80]})")
        if "completions" in tables:
            cols = [r[1] for r in db.execute("PRAGMA table_info(completions)")]
            if cols != _COLUMNS:
                raise CacheError(f"its 'completions' table has other columns ({', '.join(cols)[:80]})")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")  # fails here, once, when the file or its directory is read-only
        try:
            db.execute(f"PRAGMA application_id={_APP_ID}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER,"
                " completion_tokens INTEGER, finish_reason TEXT, created REAL)"
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _fail(self, exc: BaseException) -> None:
        """Turn the cache off for the rest of the process, with one warning."""
        if not self._off:
            self._off = True
            log.warning("the cache %s failed (%s); this run goes on without it", self.path, _why(exc))
        self._pending.clear()

    def get(self, key: str) -> Completion | None:
        if self._off:
            return None
        with self._lock:
            row = self._pending.get(key)
            if row is None:
                try:
                    row = self._db.execute(_SELECT, (key,)).fetchone()
                except (sqlite3.Error, OSError) as exc:
                    self._fail(exc)
                    return None
        if row is None:
            return None
        text = row[1].decode("utf-8", "surrogatepass") if isinstance(row[1], bytes) else row[1]
        return Completion(text=text, prompt_tokens=row[2] or 0, completion_tokens=row[3] or 0,
                          finish_reason=row[4])

    def put(self, key: str, c: Completion) -> None:
        if self._off:
            return
        row = (key, _storable(c.text), c.prompt_tokens, c.completion_tokens, c.finish_reason, time.time())
        with self._lock:
            self._pending[key] = row
            full = len(self._pending) >= self.max_pending
        if full or not self._schedule():
            self.flush()

    def _schedule(self) -> bool:
        """Arrange a flush on the running event loop; False when there is none to do it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._timer is None or self._timer_loop is not loop:
            self._timer, self._timer_loop = loop.call_later(self.flush_after, self.flush), loop
        return True

    def flush(self) -> None:
        """Write every pending row in one transaction."""
        self._timer = None  # a timer still armed finds nothing to do
        if self._off:
            return
        try:
            _write(self._db, self._lock, self._pending, False)
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        try:
            self._finalizer()  # flush and close, once
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            with contextlib.suppress(sqlite3.Error):
                self._db.close()


def _storable(text: str) -> str | bytes:
    """A reply as SQLite can keep it: text, or, when it holds a lone surrogate (a model echoing a
    ``\\ud800`` escape from the data), its surrogate-preserving UTF-8 bytes as a BLOB (SQLite's
    text must be UTF-8; :meth:`ResponseCache.get` decodes the BLOB back to the same string)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def _why(exc: BaseException) -> str:
    text = str(exc)
    if text == "file is not a database":
        return "it is not an SQLite file"
    if "readonly" in text or "unable to open" in text:
        return f"it is not writable ({text})"
    return text


def _write(db: sqlite3.Connection, lock: threading.Lock, pending: dict[str, tuple[Any, ...]], close: bool) -> None:
    with lock:
        if pending:
            rows = list(pending.values())
            db.execute("BEGIN")
            try:
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            pending.clear()
        if close:
            db.close()

"""Content-addressed SQLite cache of model completions.

The key is a SHA-256 over the backend identity (backend, model, base_url, ...), the sampling
parameters and the messages. Identity objects never carry secrets, so no API key reaches a key
or a row. Writes commit at once (WAL, synchronous=NORMAL): a run killed mid-way keeps every
completion it paid for.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .base import Completion, GenParams, Message


def cache_key(identity: dict[str, Any], params: GenParams, messages: list[Message]) -> str:
    payload = {
        "identity": identity,
        "params": params.model_dump(exclude_none=True),
        "messages": [m.to_dict() for m in messages],
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CompletionCache:
    """A small SQLite key-value store; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completions ("
            " key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER,"
            " completion_tokens INTEGER, finish_reason TEXT, created REAL)"
        )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason FROM completions WHERE key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], prompt_tokens=row[1] or 0, completion_tokens=row[2] or 0,
                          finish_reason=row[3])

    def put(self, key: str, c: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?)",
                (key, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

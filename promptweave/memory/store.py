"""The memory store: one small interface, two real implementations (SQLite, PostgreSQL).

Tables: ``pw_sessions`` (per conversation: dialogue-session counter, where the current dialogue
session starts, how far an update was asked for, last activity), ``pw_turns`` (the transcript)
and ``pw_memory`` (every memory version: text, version, the turn range it covers, the model
identity, the update template's SHA-256, the time, and any sentences a budget cut dropped).

Every write is one transaction. A memory version is written only by :meth:`SQLStore.commit_memory`,
after the model call succeeded, and only if the latest version is still the one the update read
(``expected_version``): two updates of one conversation can never overwrite each other, whether
they run in one process or in two. Old versions are kept; a rollback adds a new version.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PromptweaveError
from .recent import Recent, RecentTurns, fit_read


class VersionConflict(Exception):
    """Another update committed first; re-read the memory and try again."""


class StoreUnavailable(PromptweaveError):
    """The database cannot be reached or stayed locked; the call may be tried again (503)."""


class ConversationChanged(VersionConflict):
    """The conversation an update read was deleted (and perhaps started again) before the
    commit: its summary belongs to turns that no longer exist, so it is never written."""


@dataclass(frozen=True)
class Turn:
    seq: int
    role: str
    content: str
    dialogue_no: int
    created: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryVersion:
    version: int
    text: str
    turn_from: int
    turn_to: int
    model: dict[str, Any]
    template_sha256: str
    created: float
    cut: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReplyView:
    """What :meth:`SQLStore.begin_reply` did and read."""

    existed: bool  # the conversation had a row before this request
    ended_idle: bool  # its dialogue session was ended for idleness (a memory update is due)
    added: list[Turn]
    memory: MemoryVersion | None
    context: list[Turn]
    gen: str = ""  # the conversation's incarnation the reply read (its answer is stored only into it)


@dataclass(frozen=True)
class SessionState:
    dialogue_no: int
    session_start: int
    pending_upto: int
    last_seq: int
    last_activity: float
    gen: str = ""  # this incarnation of the conversation (a new one after a delete)


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS pw_sessions (
        ns TEXT NOT NULL, sid TEXT NOT NULL,
        dialogue_no INTEGER NOT NULL DEFAULT 1, session_start INTEGER NOT NULL DEFAULT 0,
        pending_upto INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
        last_activity DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL,
        gen TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (ns, sid))""",
    """CREATE TABLE IF NOT EXISTS pw_turns (
        ns TEXT NOT NULL, sid TEXT NOT NULL, seq INTEGER NOT NULL, dialogue_no INTEGER NOT NULL,
        role TEXT NOT NULL, content TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (ns, sid, seq))""",
    """CREATE TABLE IF NOT EXISTS pw_memory (
        ns TEXT NOT NULL, sid TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL,
        turn_from INTEGER NOT NULL, turn_to INTEGER NOT NULL, model TEXT NOT NULL,
        template_sha256 TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
        cut TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (ns, sid, version))""",
]
# a random token per incarnation of a conversation row: a conversation deleted and started again
# (by this process or another, in the same second or not) is a different one to held turns and
# to an update that read the old one; the creation time alone can repeat
_GEN_BYTES = 12


def new_gen() -> str:
    return secrets.token_hex(_GEN_BYTES)


_MAX_INT = 2**31 - 1  # the largest INTEGER both databases keep
_MEM_COLS = "version, text, turn_from, turn_to, model, template_sha256, created, cut, note"


def _memory(row: Any) -> MemoryVersion:
    return MemoryVersion(int(row[0]), row[1], int(row[2]), int(row[3]), json.loads(row[4]), row[5],
                         float(row[6]), json.loads(row[7]), row[8])


class SQLStore(ABC):
    """The store logic, in SQL both SQLite and PostgreSQL run (``?`` placeholders; a subclass
    translates them). Methods are synchronous and short; a lock serialises use of the one
    connection, and the database serialises writers across processes."""

    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent = RecentTurns()  # newest turns of active conversations (a reply reads only what is new)

    # -- what a backend provides ------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> Any:
        """A context manager yielding ``execute(sql, params) -> cursor`` inside one transaction
        that takes the write lock at once (so that a read-then-write cannot interleave)."""

    @abstractmethod
    def _reading(self) -> Any:
        """A context manager yielding ``execute`` for reads only (no write lock; each statement
        sees a committed state)."""

    @abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self._transaction() as execute:
            yield lambda sql, params=(): execute(self._sql(sql), params)

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._lock, self._reading() as execute:
            yield lambda sql, params=(): execute(self._sql(sql), params)

    def _create_schema(self) -> None:
        with self._tx() as ex:
            self._setup_schema(ex)

    @staticmethod
    def _setup_schema(ex: Any) -> None:
        """Create the tables; give a store made before ``pw_sessions.gen`` existed that column,
        with a token for every conversation it holds."""
        for stmt in _SCHEMA:
            ex(stmt)
        columns = {d[0].lower() for d in ex("SELECT * FROM pw_sessions LIMIT 0").description}
        if "gen" not in columns:
            ex("ALTER TABLE pw_sessions ADD COLUMN gen TEXT NOT NULL DEFAULT ''")
        for ns, sid in ex("SELECT ns, sid FROM pw_sessions WHERE gen = ''").fetchall():
            ex("UPDATE pw_sessions SET gen = ? WHERE ns = ? AND sid = ?", (new_gen(), ns, sid))

    # -- turns ------------------------------------------------------------------------------
    def append_turns(self, ns: str, sid: str, turns: list[tuple[str, str]], now: float | None = None, *,
                     conversation: str | None = None) -> list[Turn]:
        """Append turns at the end of the transcript (creating the conversation on first use).
        With ``conversation`` (an incarnation token, e.g. :attr:`ReplyView.gen`), only into that
        incarnation: :class:`ConversationChanged` when it was deleted meanwhile, so that an
        answer made from a forgotten conversation does not start it again."""
        now = time.time() if now is None else now
        with self._tx() as ex:
            added, gen = self._append(ex, ns, sid, turns, now, conversation)
        self._recent.appended(ns, sid, gen, added)  # committed: a held run may grow
        return added

    @staticmethod
    def _append(ex: Any, ns: str, sid: str, turns: list[tuple[str, str]], now: float,
                conversation: str | None = None) -> tuple[list[Turn], str]:
        """Inside a write transaction: advance ``last_seq`` and insert the turns after it.
        Returns them and the conversation row's incarnation token."""
        check_storable(ns, "the namespace")
        check_storable(sid, "the conversation id")
        for _, content in turns:
            check_storable(content)
        row = ex("UPDATE pw_sessions SET last_seq = last_seq + ?, last_activity = ? WHERE ns = ? AND sid = ? "
                 "RETURNING last_seq, dialogue_no, gen", (len(turns), now, ns, sid)).fetchone()
        if row is not None and conversation is not None and row[2] != conversation:
            raise ConversationChanged(f"{sid}: the conversation was deleted and started again meanwhile")
        if row is None:  # the first turn of a conversation: its row
            if conversation is not None:
                raise ConversationChanged(f"{sid}: the conversation was deleted meanwhile")
            gen = new_gen()
            ex("INSERT INTO pw_sessions (ns, sid, last_seq, last_activity, created, gen) VALUES (?, ?, ?, ?, ?, ?)",
               (ns, sid, len(turns), now, now, gen))
            row = (len(turns), 1, gen)
        last, dialogue_no = int(row[0]), int(row[1])
        out = []
        for i, (role, content) in enumerate(turns):
            seq = last - len(turns) + 1 + i
            ex("INSERT INTO pw_turns (ns, sid, seq, dialogue_no, role, content, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (ns, sid, seq, dialogue_no, role, content, now))
            out.append(Turn(seq, role, content, dialogue_no, now))
        return out, str(row[2])

    def begin_reply(self, ns: str, sid: str, sent: list[tuple[str, str]], *,
                    select_new: Callable[[list[Turn], list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
                    idle_before: float | None = None, after_memory: bool = False,
                    context_tokens: int | None = None, now: float | None = None) -> ReplyView:
        """Everything a reply does before its model call, in one transaction: end the dialogue
        session if it has been idle since before ``idle_before``; keep the ``sent`` turns that
        ``select_new(recent stored turns, sent)`` says are new; append them; read the latest
        memory and the prompt's turns (the current dialogue session's; with ``after_memory``,
        only those the memory does not cover). With ``context_tokens``, the context is read newest
        first and only as far as :func:`~promptweave.memory.prompts.fit_context` keeps it: a
        long session no longer reads every turn it has on every reply."""
        now = time.time() if now is None else now
        held: Recent | None = None  # the conversation's newest turns as held in memory, if still current
        with self._tx() as ex:
            r = ex("SELECT dialogue_no, session_start, last_seq, last_activity, gen FROM pw_sessions "
                   "WHERE ns = ? AND sid = ?", (ns, sid)).fetchone()
            ended = False
            start = 0
            gen = ""
            if r is not None:
                start, last_seq, gen = int(r[1]), int(r[2]), str(r[4])
                if context_tokens is not None:
                    held = self._recent.get(ns, sid, gen, last_seq)
                if idle_before is not None and last_seq > start and float(r[3]) < idle_before:
                    ex("UPDATE pw_sessions SET dialogue_no = dialogue_no + 1, session_start = last_seq, "
                       "pending_upto = last_seq WHERE ns = ? AND sid = ?", (ns, sid))
                    ended, start = True, last_seq
                if select_new is not None and sent:
                    after = max(0, last_seq - len(sent))
                    recent = held.tail(after) if held is not None else None
                    sent = select_new(recent if recent is not None else self._turn_rows(ex, ns, sid, after), sent)
            added: list[Turn] = []
            if sent:
                added, gen = self._append(ex, ns, sid, sent, now)
            m = ex(f"SELECT {_MEM_COLS} FROM pw_memory WHERE ns = ? AND sid = ? ORDER BY version DESC LIMIT 1",
                   (ns, sid)).fetchone()
            memory = _memory(m) if m else None
            if after_memory and memory is not None:
                start = max(start, memory.turn_to)  # folded turns live in the memory now
            context: list[Turn] | None = []
            if r is not None or added:
                if context_tokens is None:
                    context = self._turn_rows(ex, ns, sid, start)
                else:
                    if held is not None:
                        held = held.extended(added) if added else held
                        context = held.context(start, context_tokens)
                    if held is None or context is None:
                        context, held = self._newest_rows(ex, ns, sid, start, context_tokens, gen)
        if held is not None:
            self._recent.put(ns, sid, held)  # after the commit: a held run only ever copies committed rows
        return ReplyView(r is not None, ended, added, memory, context or [], gen)

    def turns(self, ns: str, sid: str, after: int = 0, upto: int | None = None) -> list[Turn]:
        """Turns with ``after < seq <= upto``, in order."""
        with self._read() as ex:
            return self._turn_rows(ex, ns, sid, after, upto)

    @staticmethod
    def _turn_rows(ex: Any, ns: str, sid: str, after: int, upto: int | None = None) -> list[Turn]:
        rows = ex("SELECT seq, role, content, dialogue_no, created FROM pw_turns WHERE ns = ? AND sid = ? "
                  "AND seq > ? AND seq <= ? ORDER BY seq", (ns, sid, after, upto if upto is not None else _MAX_INT)
                  ).fetchall()
        return [Turn(int(r[0]), r[1], r[2], int(r[3]), float(r[4])) for r in rows]

    @staticmethod
    def _newest_rows(ex: Any, ns: str, sid: str, after: int, max_tokens: int,
                     gen: str) -> tuple[list[Turn], Recent]:
        """The newest turns after ``after`` that fit ``max_tokens`` (:func:`~.budget.fit_newest`,
        as ``fit_context`` fits them), read newest first until the first that does not fit; and
        the run of rows that read covered, to hold for the next reply."""
        cur = ex("SELECT seq, role, content, dialogue_no, created FROM pw_turns WHERE ns = ? AND sid = ? "
                 "AND seq > ? ORDER BY seq DESC", (ns, sid, after))

        def newest_first() -> Iterator[Turn]:
            while rows := cur.fetchmany(64):
                yield from (Turn(int(r[0]), r[1], r[2], int(r[3]), float(r[4])) for r in rows)

        kept, costs, stop_cost = fit_read(newest_first(), max_tokens)
        last_seq = kept[-1].seq if kept else after
        # turn seqs are contiguous: the kept turns are every row after ``floor``, and a fit that
        # stopped did so at turn ``floor`` (its cost is kept, so the next fit knows it stops there too)
        floor = kept[0].seq - 1 if kept else after
        return kept, Recent(gen, last_seq, max_tokens, tuple(kept), tuple(costs), floor, stop_cost)

    def session(self, ns: str, sid: str) -> SessionState | None:
        with self._read() as ex:
            r = ex("SELECT dialogue_no, session_start, pending_upto, last_seq, last_activity, gen FROM pw_sessions "
                   "WHERE ns = ? AND sid = ?", (ns, sid)).fetchone()
        return SessionState(int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]), str(r[5])) if r else None

    def sessions(self, ns: str) -> list[str]:
        with self._read() as ex:
            return [r[0] for r in ex("SELECT sid FROM pw_sessions WHERE ns = ? ORDER BY sid", (ns,)).fetchall()]

    # -- session boundaries and update requests ---------------------------------------------
    def end_session(self, ns: str, sid: str) -> bool:
        """End the current dialogue session: the next turn starts a new one, and an update of
        everything up to here is requested. False when the session has no turns since its start."""
        with self._tx() as ex:
            r = ex("UPDATE pw_sessions SET dialogue_no = dialogue_no + 1, session_start = last_seq, "
                   "pending_upto = last_seq WHERE ns = ? AND sid = ? AND last_seq > session_start RETURNING last_seq",
                   (ns, sid)).fetchone()
        return r is not None

    def request_update(self, ns: str, sid: str, upto: int) -> None:
        """Ask for the memory to cover turns up to ``upto`` (kept across restarts)."""
        with self._tx() as ex:
            ex("UPDATE pw_sessions SET pending_upto = ? WHERE ns = ? AND sid = ? AND pending_upto < ?",
               (upto, ns, sid, upto))

    def pending(self) -> list[tuple[str, str]]:
        """Conversations whose requested update is not committed yet (e.g. after a crash)."""
        with self._read() as ex:
            rows = ex("SELECT s.ns, s.sid FROM pw_sessions s WHERE s.pending_upto > COALESCE((SELECT MAX(m.turn_to) "
                      "FROM pw_memory m WHERE m.ns = s.ns AND m.sid = s.sid), 0) ORDER BY s.ns, s.sid").fetchall()
        return [(r[0], r[1]) for r in rows]

    def idle(self, before: float) -> list[tuple[str, str]]:
        """Conversations with an open dialogue session and no turn since ``before``."""
        with self._read() as ex:
            rows = ex("SELECT ns, sid FROM pw_sessions WHERE last_seq > session_start AND last_activity < ?",
                      (before,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- memory versions --------------------------------------------------------------------
    def latest_memory(self, ns: str, sid: str) -> MemoryVersion | None:
        with self._read() as ex:
            r = ex(f"SELECT {_MEM_COLS} FROM pw_memory WHERE ns = ? AND sid = ? ORDER BY version DESC LIMIT 1",
                   (ns, sid)).fetchone()
        return _memory(r) if r else None

    def versions(self, ns: str, sid: str) -> list[MemoryVersion]:
        with self._read() as ex:
            rows = ex(f"SELECT {_MEM_COLS} FROM pw_memory WHERE ns = ? AND sid = ? ORDER BY version",
                      (ns, sid)).fetchall()
        return [_memory(r) for r in rows]

    def commit_memory(self, ns: str, sid: str, *, expected_version: int, text: str, turn_from: int, turn_to: int,
                      model: dict[str, Any], template_sha256: str, cut: list[str] | None = None,
                      note: str = "", now: float | None = None, conversation: str | None = None) -> MemoryVersion:
        """Write version ``expected_version + 1`` in one transaction, or raise
        :class:`VersionConflict` when the latest version is no longer ``expected_version``, and
        :class:`ConversationChanged` when the conversation is gone, is not the incarnation
        ``conversation`` (:attr:`SessionState.gen`, read before the update read its turns), or
        has no turn ``turn_to``: a summary of deleted turns must never outlive the delete."""
        now = time.time() if now is None else now
        mv = MemoryVersion(expected_version + 1, text, turn_from, turn_to, model, template_sha256, now,
                           list(cut or []), note)
        try:
            with self._tx() as ex:
                row = ex("SELECT last_seq, gen FROM pw_sessions WHERE ns = ? AND sid = ?", (ns, sid)).fetchone()
                if row is None or (conversation is not None and row[1] != conversation) or turn_to > int(row[0]):
                    raise ConversationChanged(f"memory of {sid}: the conversation was deleted since the update read it")
                r = ex("SELECT COALESCE(MAX(version), 0) FROM pw_memory WHERE ns = ? AND sid = ?", (ns, sid)).fetchone()
                if int(r[0]) != expected_version:
                    raise VersionConflict(f"memory of {sid} is at version {r[0]}, not {expected_version}")
                ex(f"INSERT INTO pw_memory ({_MEM_COLS}, ns, sid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (mv.version, text, turn_from, turn_to, json.dumps(model, sort_keys=True), template_sha256, now,
                    json.dumps(mv.cut), note, ns, sid))
        except VersionConflict:
            raise
        except Exception as exc:
            if self._is_unique_violation(exc):  # a writer in another process won the race
                raise VersionConflict(f"memory of {sid}: version {mv.version} was written concurrently") from None
            raise
        return mv

    def rollback(self, ns: str, sid: str, version: int, now: float | None = None) -> MemoryVersion:
        """Make the text of ``version`` current again, as a new version (history is kept). The
        new version covers the same turns as the latest, so the rolled-back facts are not
        re-learned from turns that were already summarised. One transaction: an update that
        commits meanwhile is simply the version rolled back over, never a failed request.
        KeyError when the conversation has no such version."""
        now = time.time() if now is None else now
        if not 1 <= version <= _MAX_INT:  # SQLite's integers end at 2**63: never a version anyway
            raise KeyError(f"no memory version {version}")
        with self._tx() as ex:
            rows = ex(f"SELECT {_MEM_COLS} FROM pw_memory WHERE ns = ? AND sid = ? AND version IN (?, "
                      "(SELECT MAX(version) FROM pw_memory WHERE ns = ? AND sid = ?)) ORDER BY version",
                      (ns, sid, version, ns, sid)).fetchall()
            found = [_memory(r) for r in rows]
            if not found or found[0].version != version:
                raise KeyError(f"no memory version {version}")
            target, latest = found[0], found[-1]
            mv = MemoryVersion(latest.version + 1, target.text, latest.turn_from, latest.turn_to, target.model,
                               target.template_sha256, now, [], f"rollback to version {version}")
            ex(f"INSERT INTO pw_memory ({_MEM_COLS}, ns, sid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (mv.version, mv.text, mv.turn_from, mv.turn_to, json.dumps(mv.model, sort_keys=True),
                mv.template_sha256, now, "[]", mv.note, ns, sid))
        return mv

    def delete(self, ns: str, sid: str) -> bool:
        """Forget a conversation: its turns and every memory version. False if it did not exist."""
        with self._tx() as ex:
            found = ex("DELETE FROM pw_sessions WHERE ns = ? AND sid = ? RETURNING sid", (ns, sid)).fetchone()
            ex("DELETE FROM pw_turns WHERE ns = ? AND sid = ?", (ns, sid))
            ex("DELETE FROM pw_memory WHERE ns = ? AND sid = ?", (ns, sid))
        self._recent.drop(ns, sid)
        return found is not None


def check_storable(text: str, what: str = "a turn's text") -> None:
    """Refuse text a store cannot keep as it is: NUL (PostgreSQL's text has none) and lone
    surrogates (not UTF-8). Both stores refuse the same text, so a conversation never works on
    one and fails on the other."""
    if "\x00" in text:
        raise ValueError(f"{what} contains a NUL character (\\u0000); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} contains a lone surrogate at character {exc.start}; send valid "
                         "Unicode") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as a store keeps it: NULs dropped and lone surrogates replaced by U+FFFD. For
    text the server itself produced (a model's reply), which must not be lost for one odd
    character; text a client sent is refused instead (:func:`check_storable`)."""
    try:
        check_storable(text)
        return text
    except ValueError:
        return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def open_store(url: str) -> SQLStore:
    """``sqlite:///path/to/file.db`` (or a plain path) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        from .pg_store import PostgresStore

        return PostgresStore(url)
    from .sqlite_store import SQLiteStore

    return SQLiteStore(url.removeprefix("sqlite:///").removeprefix("sqlite://"))

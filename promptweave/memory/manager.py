"""The memory engine: replies from the latest committed memory, updates off the reply path.

A reply takes the conversation's lock only to append turns and build its prompt from the
memory that is committed *now*; it never waits for an update. Updates run as background tasks,
one at a time per conversation, and go through :class:`~promptweave.models.runtime.ModelRuntime`
like every other call (cache, retries, ledger). What an update must cover is written to the
store before it starts (``pending_upto``), so a crash leaves a request that :meth:`recover`
redoes after a restart; its result is committed only after the model call succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PromptweaveError
from ..models.runtime import ModelRuntime
from ..prompts import get_template
from .budget import Budget, approx_tokens
from .config import MemoryConfig
from .dedup import new_turns
from .prompts import clean_reply, render_respond
from .store import ConversationChanged, MemoryVersion, SQLStore, StoreUnavailable, Turn, VersionConflict, storable
from .updater import Summarizer, UpdateFailure

log = logging.getLogger("promptweave.memory")


class ReplyError(PromptweaveError):
    """The model could not produce a reply; the user's turn is kept (a resend is deduplicated)."""


class ReplyDiscarded(ReplyError):
    """The conversation was deleted (by another process) while its reply was made: the reply is
    not stored, since storing it would start the forgotten conversation again."""


@dataclass
class Reply:
    text: str
    turns: list[Turn]
    memory_version: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    messages: list[Any] = field(default_factory=list)


class MemoryManager:
    """One store, the runtimes (``default`` replies, ``cfg.update_model`` updates), one policy."""

    def __init__(self, store: SQLStore, runtimes: dict[str, ModelRuntime], cfg: MemoryConfig,
                 base_dir: str | Path | None = None) -> None:
        self.store, self.runtimes, self.cfg = store, runtimes, cfg
        self.update_tpl = get_template(cfg.update_template, base_dir)
        self.respond_tpl = get_template(cfg.respond_template, base_dir)
        if cfg.update_model not in runtimes:
            raise PromptweaveError(f"memory.update_model: no model named '{cfg.update_model}'; "
                                   f"define it under 'models:' (have: {', '.join(runtimes)})")
        self.budget = Budget(cfg.max_sentences, cfg.max_memory_tokens)
        self.summarizer = Summarizer(runtimes[cfg.update_model], self.update_tpl, self.budget, cfg.compress_tries)
        # a lock lives while someone holds or waits for it: an idle conversation costs no memory
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self.failures: dict[tuple[str, str], UpdateFailure] = {}
        self.updates_committed = 0

    # -- the reply path ----------------------------------------------------------------------
    def lock(self, ns: str, sid: str) -> asyncio.Lock:
        lock = self._locks.get((ns, sid))
        if lock is None:
            lock = self._locks[(ns, sid)] = asyncio.Lock()
        return lock

    async def reply(self, ns: str, sid: str, sent: list[tuple[str, str]], *, dedup: bool = True,
                    **overrides: Any) -> Reply:
        """Append the new ones of the ``sent`` turns (ending with the user's; with ``dedup``,
        turns the transcript already ends with are not stored again), answer from the committed
        memory and the current session's context, append the answer. ``overrides``:
        temperature, max_tokens."""
        async with self.lock(ns, sid):
            view = self.store.begin_reply(ns, sid, sent, select_new=new_turns if dedup else None,
                                          idle_before=self._idle_cutoff(), after_memory=self.cfg.policy == "token_budget",
                                          context_tokens=self.cfg.context_tokens)
            if view.ended_idle:
                self.schedule(ns, sid)
            if not view.existed and not view.added:
                raise ReplyError("the conversation has no turns to answer")
            memory = view.memory
            context = view.context  # already fitted to context_tokens by the store
            messages = render_respond(self.respond_tpl, memory.text if memory else None, context)
            res = await self.runtimes["default"].chat(messages, **overrides)
            if not res.ok or res.text is None:
                raise ReplyError(f"the model failed: {res.error}")
            # a NUL or lone surrogate from a backend must not lose the reply when it is stored
            text = storable(clean_reply(res.text, self.respond_tpl.meta.get("reply_marker")))
            try:
                stored = self.store.append_turns(ns, sid, [("assistant", text)], conversation=view.gen)
            except ConversationChanged:
                raise ReplyDiscarded("the conversation was deleted while its reply was made; nothing was stored, "
                                     "send the message again to start a new one") from None
            added = view.added + stored
            try:
                self._apply_policy(ns, sid)
            except StoreUnavailable as exc:  # the reply is stored: answer it (the next reply looks again)
                log.warning("memory policy of %s/%s not applied: %s", ns, sid, exc)
            return Reply(text, added, memory.version if memory else 0, res.prompt_tokens, res.completion_tokens,
                         res.finish_reason, messages)

    def _apply_policy(self, ns: str, sid: str) -> None:
        if self.cfg.policy == "session_end":
            return
        state = self.store.session(ns, sid)
        memory = self.store.latest_memory(ns, sid)
        if state is None:
            return
        covered = max(memory.turn_to if memory else 0, state.pending_upto)
        live = self.store.turns(ns, sid, after=covered)
        if self.cfg.policy == "every_n_turns":
            if len(live) >= self.cfg.every_n_turns:
                self.store.request_update(ns, sid, live[-1].seq)
                self.schedule(ns, sid)
        elif sum(approx_tokens(t.content) + 2 for t in live) > self.cfg.context_tokens:
            fold = live[: max(len(live) - self.cfg.keep_turns, 1)]
            self.store.request_update(ns, sid, fold[-1].seq)
            self.schedule(ns, sid)

    # -- sessions ----------------------------------------------------------------------------
    def end_session(self, ns: str, sid: str) -> bool:
        """End the current dialogue session and start its memory update (in the background)."""
        ended = self.store.end_session(ns, sid)
        if ended:
            self.schedule(ns, sid)
        return ended

    async def forget(self, ns: str, sid: str) -> bool:
        """Delete the conversation: its turns and every memory version."""
        task = self._tasks.pop((ns, sid), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with self.lock(ns, sid):
            gone = self.store.delete(ns, sid)
        # the lock stays: a reply already waiting for it would otherwise run beside one that
        # takes a new lock (the weak dictionary drops it once nobody holds or waits for it)
        self.failures.pop((ns, sid), None)
        return gone

    # -- updates, off the reply path ---------------------------------------------------------
    def schedule(self, ns: str, sid: str) -> None:
        key = (ns, sid)
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._again.add(key)  # the running task looks again when it finishes
            return
        task = self._tasks[key] = asyncio.get_running_loop().create_task(self._update_loop(ns, sid))
        task.add_done_callback(lambda t: self._tasks.pop(key, None) if self._tasks.get(key) is t else None)

    def recover(self) -> int:
        """Schedule every update that was asked for but never committed (after a crash)."""
        pending = self.store.pending()
        for ns, sid in pending:
            self.schedule(ns, sid)
        return len(pending)

    def sweep_idle(self) -> int:
        """End the dialogue sessions idle for longer than ``idle_timeout``."""
        before = self._idle_cutoff()
        if before is None:
            return 0
        return sum(self.end_session(ns, sid) for ns, sid in self.store.idle(before))

    def _idle_cutoff(self) -> float | None:
        """The time before which a session's last activity means it ended (session_end policy
        with an idle_timeout only)."""
        if self.cfg.policy != "session_end" or self.cfg.idle_timeout is None:
            return None
        return time.time() - self.cfg.idle_timeout

    async def drain(self) -> None:
        """Wait until no update is running (tests, evaluation, shutdown)."""
        while True:
            tasks = [t for t in self._tasks.values() if not t.done()]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _update_loop(self, ns: str, sid: str) -> None:
        key = (ns, sid)
        try:
            while True:
                self._again.discard(key)
                state = self.store.session(ns, sid)
                memory = self.store.latest_memory(ns, sid)
                covered = memory.turn_to if memory else 0
                if state is None or state.pending_upto <= covered:
                    if key in self._again:
                        continue
                    return
                committed = await self.update_once(ns, sid, memory, covered, state.pending_upto,
                                                   conversation=state.gen)
                if committed is None:
                    # a failed call: keep the request, try again later (a restart also redoes it)
                    asyncio.get_running_loop().call_later(self.cfg.update_retry_after, self._retry, ns, sid)
                    return
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:  # the database is back later: the request is still stored
            self.failures[key] = UpdateFailure(time.time(), str(exc))
            asyncio.get_running_loop().call_later(self.cfg.update_retry_after, self._retry, ns, sid)
        except Exception as exc:  # noqa: BLE001 - an update must never take the server down
            log.exception("memory update of %s/%s failed", ns, sid)
            self.failures[key] = UpdateFailure(time.time(), f"{type(exc).__name__}: {exc}")

    def _retry(self, ns: str, sid: str) -> None:
        if (ns, sid) not in self._tasks or self._tasks[(ns, sid)].done():
            self.schedule(ns, sid)

    async def update_once(self, ns: str, sid: str, memory: MemoryVersion | None, covered: int,
                          upto: int, *, conversation: str | None = None) -> MemoryVersion | bool | None:
        """Summarise turns ``covered < seq <= upto`` into a new version. Returns the version,
        False after a version conflict or when the conversation (the incarnation
        ``conversation``, :attr:`~.store.SessionState.gen`) was deleted meanwhile (the caller
        re-reads), None when the model failed."""
        turns = self.store.turns(ns, sid, after=covered, upto=upto)
        result = await self.summarize(memory.text if memory else None, turns)
        if isinstance(result, UpdateFailure):
            self.failures[(ns, sid)] = result
            return None
        text, cut, note = result
        rt = self.runtimes[self.cfg.update_model]
        try:
            mv = self.store.commit_memory(ns, sid, expected_version=memory.version if memory else 0, text=text,
                                          turn_from=covered + 1, turn_to=upto, model=dict(rt.identity),
                                          template_sha256=self.update_tpl.sha256, cut=cut, note=note,
                                          conversation=conversation)
        except VersionConflict:
            return False
        self.failures.pop((ns, sid), None)
        self.updates_committed += 1
        return mv

    async def summarize(self, previous: str | None, turns: list[Any]) -> tuple[str, list[str], str] | UpdateFailure:
        """One update's text within the budget (see :class:`~promptweave.memory.updater.Summarizer`)."""
        return await self.summarizer(previous, turns)

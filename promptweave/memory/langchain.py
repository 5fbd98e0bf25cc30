"""Recursive-summary memory around any LangChain chat model (``RunnableWithMessageHistory``
style: sessions by id in ``config={"configurable": {"session_id": ...}}``)::

    from langchain_openai import ChatOpenAI
    from promptweave.memory.langchain import with_recursive_memory

    chat = with_recursive_memory(ChatOpenAI(model="gpt-4o-mini"), store="sqlite:///memory.db")
    cfg = {"configurable": {"session_id": "ada"}}
    chat.invoke("Hi, my name is Ada.", config=cfg)
    chat.end_session("ada")          # the memory update runs in the background
    chat.invoke("Do you remember me?", config=cfg)

Every call goes through :class:`~promptweave.models.runtime.ModelRuntime` (retries, ledger);
the memory lives in the store (SQLite or PostgreSQL), not in the process. Updates run on the
adapter's own event loop thread, so they continue between synchronous ``invoke`` calls.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Coroutine, TypeVar

from ..errors import MissingDependency
from ..models.langchain import LangChainChatModel
from ..models.runtime import ModelRuntime
from ..models.spec import ModelConfig
from .config import MemoryConfig
from .manager import MemoryManager
from .store import MemoryVersion, SQLStore, open_store

T = TypeVar("T")

try:
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.runnables import Runnable, RunnableConfig
except ImportError as exc:  # pragma: no cover - the langchain extra
    raise MissingDependency("langchain-core", "langchain", exc) from None


def _runtime(model: Any, name: str) -> ModelRuntime:
    cls = type(model)
    identity = {"backend": "langchain", "model": f"{cls.__module__}:{cls.__qualname__}",
                "name": str(getattr(model, "model_name", None) or getattr(model, "model", None) or name)}
    cfg = ModelConfig(backend="langchain", model=identity["model"], cache=False)
    return ModelRuntime(cfg, LangChainChatModel(model, identity, pass_params=False))


class RecursiveMemoryRunnable(Runnable[Any, AIMessage]):
    """A runnable chat with long-term memory: input a string, a message or ``{"input": ...}``."""

    def __init__(self, model: Any, store: SQLStore | str, memory: MemoryConfig | None = None,
                 update_model: Any = None, namespace: str = "langchain") -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        runtimes = {"default": _runtime(model, "default")}
        cfg = memory or MemoryConfig()
        if update_model is not None:
            runtimes["memory"] = _runtime(update_model, "memory")
            cfg = cfg.model_copy(update={"update_model": "memory"})
        self.namespace = namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pw-memory", daemon=True)
        self._thread.start()
        self.manager = MemoryManager(self.store, runtimes, cfg)
        self._run(self._recover())

    async def _recover(self) -> None:
        self.manager.recover()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    @staticmethod
    def _session(config: RunnableConfig | None) -> str:
        sid = ((config or {}).get("configurable") or {}).get("session_id")
        if not isinstance(sid, str) or not sid:
            raise ValueError('give the session: config={"configurable": {"session_id": "..."}}')
        return sid

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, dict):
            value = value.get("input", value.get("question"))
        if isinstance(value, BaseMessage):
            value = value.content
        if not isinstance(value, str):
            raise TypeError("input is a string, a message or {'input': str}")
        return value

    async def _reply(self, text: str, sid: str) -> AIMessage:
        reply = await self.manager.reply(self.namespace, sid, [("user", text)], dedup=False)
        return AIMessage(content=reply.text, response_metadata={"memory_version": reply.memory_version},
                         usage_metadata={"input_tokens": reply.prompt_tokens,
                                         "output_tokens": reply.completion_tokens,
                                         "total_tokens": reply.prompt_tokens + reply.completion_tokens})

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return self._run(self._reply(self._text(input), self._session(config)))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        fut = asyncio.run_coroutine_threadsafe(self._reply(self._text(input), self._session(config)), self._loop)
        return await asyncio.wrap_future(fut)

    def end_session(self, session_id: str, wait: bool = False) -> bool:
        """End the dialogue session (the memory update starts); ``wait`` blocks until it committed."""
        async def go() -> bool:
            ended = self.manager.end_session(self.namespace, session_id)
            if wait:
                await self.manager.drain()
            return ended
        return self._run(go())

    def memory(self, session_id: str) -> MemoryVersion | None:
        return self.store.latest_memory(self.namespace, session_id)

    def forget(self, session_id: str) -> bool:
        return self._run(self.manager.forget(self.namespace, session_id))

    def close(self) -> None:
        self._run(self.manager.drain())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.store.close()


def with_recursive_memory(model: Any, store: SQLStore | str = "sqlite:///promptweave-memory.db",
                          **kwargs: Any) -> RecursiveMemoryRunnable:
    """Wrap a LangChain chat model (or any runnable taking messages) in recursive-summary memory."""
    return RecursiveMemoryRunnable(model, store, **kwargs)

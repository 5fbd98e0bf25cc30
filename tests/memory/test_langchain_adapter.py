"""The LangChain-side adapter: memory around any runnable chat model, sessions by id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .scripted import RESPOND_RULES, UPDATE_RULES

pytest.importorskip("langchain_core")
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from promptweave.memory.langchain import with_recursive_memory  # noqa: E402


def _rules_model(rules: list[dict[str, str]], default: str) -> RunnableLambda:
    """A LangChain runnable answering by the scripted rules (the fake at the edge)."""
    def answer(messages: list) -> AIMessage:
        text = messages[-1].content
        for r in rules:
            m = re.search(r["match"], text, re.S)
            if m:
                return AIMessage(content=m.expand(r["reply"]))
        return AIMessage(content=default)
    return RunnableLambda(answer)


def test_adapter_remembers_across_sessions_and_store_reopen(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'm.db'}"
    chat = with_recursive_memory(_rules_model(RESPOND_RULES, "OK."), store=store,
                                 update_model=_rules_model(UPDATE_RULES, "none"))
    cfg = {"configurable": {"session_id": "ada"}}
    assert chat.invoke("Hello, my name is Ada.", config=cfg).content == "You said: Hello, my name is Ada."
    assert chat.end_session("ada", wait=True) is True
    assert chat.memory("ada").text == "The user's name is Ada."
    assert chat.memory("ada").model["backend"] == "langchain"
    chat.close()
    again = with_recursive_memory(_rules_model(RESPOND_RULES, "OK."), store=store)
    assert again.invoke({"input": "Do you remember me?"}, config=cfg).content == "Nice to talk again, Ada!"
    other = {"configurable": {"session_id": "bob"}}
    assert again.invoke("Do you remember me?", config=other).content == "You said: Do you remember me?"
    with pytest.raises(ValueError, match="session_id"):
        again.invoke("hi")
    assert again.forget("ada") is True and again.memory("ada") is None
    again.close()


async def test_adapter_ainvoke(tmp_path: Path) -> None:
    chat = with_recursive_memory(_rules_model(RESPOND_RULES, "OK."), store=f"sqlite:///{tmp_path / 'm.db'}")
    msg = await chat.ainvoke("hi there", config={"configurable": {"session_id": "s"}})
    assert msg.content == "You said: hi there" and msg.response_metadata["memory_version"] == 0
    chat.close()

"""The acceptance conversation: the official ``openai`` client (plain and streaming) and
LangChain's ``ChatOpenAI`` hold three sessions with a real ``promptweave serve``; a fact from
session 1 is in the memory after session 1 ends and reaches the prompt of session 3."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .server import serve, serve_config, wait_for_version

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")


def _end(root: str, sid: str) -> None:
    assert httpx.post(f"{root}/v1/sessions/{sid}/end", timeout=10).json()["ended"] is True


def test_openai_client_three_sessions_plain_and_stream(tmp_path: Path) -> None:
    with serve(serve_config(tmp_path)) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0)
        # session 1, plain: only the new user turn each time
        r = client.chat.completions.create(model="any", user="ada",
                                           messages=[{"role": "user", "content": "Hi, my name is Ada."}])
        assert r.choices[0].message.content == "You said: Hi, my name is Ada."
        _end(s.root, "ada")
        body = wait_for_version(s.root, "ada", 1)
        assert body["memory"]["text"] == "The user's name is Ada."
        # session 2, streaming, the whole history resent as most clients do (deduplicated)
        history = [{"role": "user", "content": "Hi, my name is Ada."},
                   {"role": "assistant", "content": r.choices[0].message.content},
                   {"role": "user", "content": "I live in Lyon."}]
        stream = client.chat.completions.create(model="any", user="ada", messages=history, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "You said: I live in Lyon."
        _end(s.root, "ada")
        body = wait_for_version(s.root, "ada", 2)
        assert body["memory"]["text"] == "The user's name is Ada. The user lives in Lyon."
        assert len(body["turns"]) == 4  # the resent history was not stored twice
        # session 3: the memory built from sessions 1 and 2 is in the prompt
        stream = client.chat.completions.create(model="any", user="ada", stream=True,
                                                messages=[{"role": "user", "content": "Do you remember me?"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "I remember: The user's name is Ada. The user lives in Lyon."
        assert [m["id"] for m in client.models.list().model_dump()["data"]] == ["promptweave-memory"]
    assert "Traceback" not in s.log()


def test_langchain_chat_openai_three_sessions(tmp_path: Path) -> None:
    lc = pytest.importorskip("langchain_openai")
    with serve(serve_config(tmp_path)) as s:
        llm = lc.ChatOpenAI(base_url=s.base_url, api_key="unused", model="any", max_retries=0,
                            default_headers={"X-Session-Id": "lc-user"})
        assert llm.invoke("Hello, my name is Grace.").content == "You said: Hello, my name is Grace."
        _end(s.root, "lc-user")
        wait_for_version(s.root, "lc-user", 1)
        assert llm.invoke("I live in Oslo.").content == "You said: I live in Oslo."
        _end(s.root, "lc-user")
        body = wait_for_version(s.root, "lc-user", 2)
        assert body["memory"]["text"] == "The user's name is Grace. The user lives in Oslo."
        chunks = [c.content for c in llm.stream("Do you remember me?")]
        assert "".join(chunks) == "I remember: The user's name is Grace. The user lives in Oslo."

"""Auth namespaces and hostile input against a real server: each case a clear OpenAI-style
error, never a traceback, nothing of another key's sessions revealed, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promptweave.errors import ConfigError
from promptweave.serve import load_serve_config

from .server import Served, serve, serve_config

pytest.importorskip("fastapi")

A = {"Authorization": "Bearer key-a-secret"}
B = {"Authorization": "Bearer key-b-secret"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("iso")
    cfg = serve_config(tmp, keys_env="PW_TEST_KEYS", max_body_bytes=100_000, max_tokens_limit=2048)
    with serve(cfg, env={"PW_TEST_KEYS": "key-a-secret, key-b-secret"}) as s:
        r = httpx.post(f"{s.root}/v1/chat/completions", headers=A,
                       json={"user": "shared-name", "messages": [{"role": "user", "content": "my name is Ada"}]})
        assert r.status_code == 200
        httpx.post(f"{s.root}/v1/sessions/shared-name/end", headers=A)
        yield s
    assert "Traceback" not in s.log()
    assert "key-a-secret" not in s.log()


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    assert "Traceback" not in r.text
    return body["error"]


def _chat(s: Served, body: dict | bytes, headers: dict | None = None) -> httpx.Response:
    h = {**A, **(headers or {})}
    if isinstance(body, bytes):
        return httpx.post(f"{s.root}/v1/chat/completions", content=body,
                          headers={**h, "content-type": "application/json"}, timeout=60)
    return httpx.post(f"{s.root}/v1/chat/completions", json=body, headers=h, timeout=60)


def _a_turns(s: Served) -> list:
    return httpx.get(f"{s.root}/v1/sessions/shared-name", headers=A).json()["turns"]


def test_no_key_or_a_wrong_key_is_401(server: Served) -> None:
    msg = {"user": "x", "messages": [{"role": "user", "content": "hi"}]}
    assert _error(httpx.post(f"{server.root}/v1/chat/completions", json=msg), 401)["code"] == "invalid_api_key"
    _error(httpx.post(f"{server.root}/v1/chat/completions", json=msg, headers={"Authorization": "Bearer nope"}), 401)
    _error(httpx.get(f"{server.root}/v1/sessions/shared-name"), 401)
    _error(httpx.get(f"{server.root}/v1/models"), 401)


def test_one_key_never_reaches_another_keys_sessions(server: Served) -> None:
    before = _a_turns(server)
    assert _error(httpx.get(f"{server.root}/v1/sessions/shared-name", headers=B), 404)["code"] == "session_not_found"
    _error(httpx.delete(f"{server.root}/v1/sessions/shared-name", headers=B), 404)
    _error(httpx.post(f"{server.root}/v1/sessions/shared-name/end", headers=B), 404)
    # B's conversation of the same name is B's own: a new user, memory "none"
    r = _chat(server, {"user": "shared-name", "messages": [{"role": "user", "content": "who am I?"}]}, B)
    assert r.json()["choices"][0]["message"]["content"] == "You said: who am I?"
    assert [t["content"] for t in httpx.get(f"{server.root}/v1/sessions/shared-name", headers=B).json()["turns"]] == \
        ["who am I?", "You said: who am I?"]
    assert _a_turns(server) == before


@pytest.mark.parametrize("body,status,code", [
    (b"x" * (10 * 1024 * 1024), 413, "request_too_large"),
    (b'{"user": "u", "messages": [{"role": "user", "content": "caf\xe9"}]}', 400, "invalid_encoding"),
    (b'{"user": "u", "messages": [', 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_request"),
    (b"[" * 100_000, 400, "invalid_json"),
])
def test_bad_bodies(server: Served, body: bytes, status: int, code: str) -> None:
    before = _a_turns(server)
    assert _error(_chat(server, body), status)["code"] == code
    assert _a_turns(server) == before


@pytest.mark.parametrize("body,param", [
    ({"user": "u"}, "messages"),
    ({"user": "u", "messages": []}, "messages"),
    ({"user": "u", "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"user": "u", "messages": [{"role": "assistant", "content": "x"}]}, "messages"),
    ({"user": "u", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"user": "u", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
    ({"user": "u", "max_tokens": 10**9, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"user": "u", "max_tokens": 10**40, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ({"user": "u", "temperature": "hot", "messages": [{"role": "user", "content": "hi"}]}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "user"),
    ({"user": "../../etc/passwd", "messages": [{"role": "user", "content": "hi"}]}, "user"),
    ({"user": "a/b", "messages": [{"role": "user", "content": "hi"}]}, "user"),
    ({"user": "x" * 500, "messages": [{"role": "user", "content": "hi"}]}, "user"),
])
def test_bad_fields_are_400_naming_the_field(server: Served, body: dict, param: str) -> None:
    err = _error(_chat(server, body), 400)
    assert err["param"].startswith(param), err


def test_path_characters_in_session_urls(server: Served) -> None:
    for path in ["..%2F..%2Fetc%2Fpasswd", "a%2Fb", "%2e%2e", "shared-name%00"]:
        r = httpx.get(f"{server.root}/v1/sessions/{path}", headers=A)
        assert r.status_code in (400, 404), (path, r.text)
        _error(r, r.status_code)
    _error(_chat(server, {"messages": [{"role": "user", "content": "hi"}]}, {"X-Session-Id": "../x"}), 400)


def test_delete_forgets_turns_and_every_version(server: Served) -> None:
    r = _chat(server, {"user": "gone", "messages": [{"role": "user", "content": "my name is Bob"}]})
    assert r.status_code == 200
    httpx.post(f"{server.root}/v1/sessions/gone/end", headers=A)
    assert httpx.delete(f"{server.root}/v1/sessions/gone", headers=A).json()["deleted"] is True
    _error(httpx.get(f"{server.root}/v1/sessions/gone", headers=A), 404)
    r = _chat(server, {"user": "gone", "messages": [{"role": "user", "content": "hello?"}]})
    assert "[Previous Memory] none" not in r.text  # a fresh start, answered normally
    assert len(httpx.get(f"{server.root}/v1/sessions/gone", headers=A).json()["turns"]) == 2


def test_binds_loopback_and_refuses_an_open_unauthenticated_bind(tmp_path: Path) -> None:
    from promptweave.serve.auth import Auth

    loaded = load_serve_config(serve_config(tmp_path))
    assert load_serve_config(serve_config(tmp_path)).config.server.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="without API keys"):
        Auth.from_config(loaded, "0.0.0.0")
    loaded.config.server.keys_env = "PW_SURELY_UNSET_KEYS"
    with pytest.raises(ConfigError, match="export PW_SURELY_UNSET_KEYS"):
        Auth.from_config(loaded, "127.0.0.1")


def test_rollback_restores_an_old_memory_as_a_new_version(server: Served) -> None:
    from .server import wait_for_version

    for k, text in enumerate(["my name is Eve", "I live in Rome"], start=1):
        assert _chat(server, {"user": "rb", "messages": [{"role": "user", "content": text}]}).status_code == 200
        httpx.post(f"{server.root}/v1/sessions/rb/end", headers=A)
        wait_for_version(server.root, "rb", k, headers=A)
    r = httpx.post(f"{server.root}/v1/sessions/rb/rollback", json={"version": 1}, headers=A)
    assert r.status_code == 200 and r.json()["memory"]["version"] == 3
    body = httpx.get(f"{server.root}/v1/sessions/rb", headers=A).json()
    assert [v["text"] for v in body["versions"]] == ["The user's name is Eve.",
                                                     "The user's name is Eve. The user lives in Rome.",
                                                     "The user's name is Eve."]
    _error(httpx.post(f"{server.root}/v1/sessions/rb/rollback", json={"version": 9}, headers=A), 404)
    _error(httpx.post(f"{server.root}/v1/sessions/rb/rollback", json={"version": "1"}, headers=A), 400)
    _error(httpx.post(f"{server.root}/v1/sessions/rb/rollback", json={"version": 1}, headers=B), 404)


def test_wrong_method_and_unknown_paths_are_json_errors(server: Served) -> None:
    assert _error(httpx.get(f"{server.root}/v1/chat/completions", headers=A), 405)["code"] == "method_not_allowed"
    assert _error(httpx.post(f"{server.root}/v1/chat/completion", headers=A, json={}), 404)["message"] == \
        "no such endpoint"

"""Hostile input found by probing a real server: each a clear OpenAI-style 400/401/404, never a
500, a redirect, a silently coerced value or a guess between two conflicting values."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .server import Served, serve, serve_config

pytest.importorskip("fastapi")

A = {"Authorization": "Bearer key-a"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hostile")
    with serve(serve_config(tmp, keys_env="PW_HOSTILE_KEYS"), env={"PW_HOSTILE_KEYS": "key-a,key-b"}) as s:
        yield s
    assert "Traceback" not in s.log()


def _post(s: Served, body: dict | bytes, headers: dict | list | None = None) -> httpx.Response:
    h = headers if headers is not None else A
    if isinstance(body, bytes):
        h = [*(h.items() if isinstance(h, dict) else h), ("content-type", "application/json")]
        return httpx.post(f"{s.root}/v1/chat/completions", content=body, headers=h, timeout=30)
    return httpx.post(f"{s.root}/v1/chat/completions", json=body, headers=h, timeout=30)


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    return body["error"]


def _turns(s: Served, sid: str) -> list[str]:
    r = httpx.get(f"{s.root}/v1/sessions/{sid}", headers=A)
    return [t["content"] for t in r.json()["turns"]] if r.status_code == 200 else []


@pytest.mark.parametrize("raw,param", [
    (rb'{"user": "sur", "messages": [{"role": "user", "content": "a\ud800b"}]}', "messages.0.content"),
    (rb'{"user": "sur", "stream": true, "messages": [{"role": "user", "content": "a\udfffb"}]}', "messages.0.content"),
    (rb'{"user": "sur", "messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]}',
     "messages.0.content"),
    (rb'{"user": "sur", "messages": [{"role": "user", "content": "a\u0000b"}]}', "messages.0.content"),
    (b'{"user": "sur", "max_tokens": ' + b"9" * 5000 + b', "messages": [{"role": "user", "content": "hi"}]}', None),
    (b'{"user": "sur", "user": "other", "messages": [{"role": "user", "content": "hi"}]}', "user"),
    (b'{"user": "sur", "messages": [{"role": "user", "content": "hi", "content": "ho"}]}', "content"),
])
def test_text_no_store_keeps_and_ambiguous_json_are_400_before_anything_is_stored(
        server: Served, raw: bytes, param: str | None) -> None:
    err = _error(_post(server, raw), 400)
    assert err["param"] == param, err
    assert _turns(server, "sur") == [] and _turns(server, "other") == []


@pytest.mark.parametrize("field,value", [
    ("stream", "yes"), ("stream", 1), ("stream", "true"),
    ("max_tokens", True), ("max_tokens", "10"), ("max_tokens", 2.0), ("max_completion_tokens", True),
    ("temperature", True), ("temperature", "1"), ("n", True), ("model", 5),
])
def test_values_of_the_wrong_json_type_are_refused_not_coerced(server: Served, field: str, value: object) -> None:
    err = _error(_post(server, {"user": "typed", "messages": HI, field: value}), 400)
    assert err["param"] == field
    assert _turns(server, "typed") == []


def test_the_right_types_still_pass(server: Served) -> None:
    r = _post(server, {"user": "typed-ok", "messages": HI, "stream": False, "max_tokens": 5, "temperature": 1,
                       "n": 1, "model": "any"})
    assert r.status_code == 200, r.text


def test_conflicting_conversation_names_are_refused(server: Served) -> None:
    err = _error(_post(server, {"user": "named-a", "messages": HI}, {**A, "X-Session-Id": "named-b"}), 400)
    assert err["code"] == "conflicting_session"
    err = _error(_post(server, {"messages": HI}, [*A.items(), ("X-Session-Id", "named-a"), ("X-Session-Id", "named-b")]),
                 400)
    assert err["code"] == "conflicting_session"
    assert _turns(server, "named-a") == [] and _turns(server, "named-b") == []
    assert _post(server, {"user": "named-a", "messages": HI}, {**A, "X-Session-Id": "named-a"}).status_code == 200


def test_two_authorization_headers_are_401_on_every_route(server: Served) -> None:
    two = [("Authorization", "Bearer nope"), ("Authorization", "Bearer key-a")]
    assert _error(_post(server, {"user": "two-keys", "messages": HI}, two), 401)["code"] == "invalid_api_key"
    _error(_post(server, {"user": "two-keys", "messages": HI}, [("Authorization", "Bearer key-a"),
                                                               ("Authorization", "Bearer key-b")]), 401)
    _error(httpx.get(f"{server.root}/v1/models", headers=two), 401)
    _error(httpx.get(f"{server.root}/v1/sessions/two-keys", headers=two), 401)
    assert _turns(server, "two-keys") == []


def test_a_trailing_slash_is_a_json_404_not_a_redirect(server: Served) -> None:
    assert _post(server, {"user": "slash", "messages": HI}).status_code == 200
    for method in ("GET", "DELETE"):
        _error(httpx.request(method, f"{server.root}/v1/sessions/slash/", headers=A), 404)
    _error(httpx.post(f"{server.root}/v1/sessions/slash/end/", headers=A), 404)
    assert _turns(server, "slash") == ["hi", "You said: hi"]


def test_the_served_model_can_be_retrieved_by_id(server: Served) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server.root}/v1", api_key="key-a", max_retries=0)
    assert client.models.retrieve("promptweave-memory").id == "promptweave-memory"
    assert _error(httpx.get(f"{server.root}/v1/models/gpt-4", headers=A), 404)["code"] == "model_not_found"
    _error(httpx.get(f"{server.root}/v1/models/promptweave-memory"), 401)


@pytest.mark.parametrize("body,status", [(b'{"version": 10000000000000000000000}', 404), (b'{"version": 0}', 404),
                                         (b'{"version": 1, "version": 2}', 400)])
def test_rollback_to_versions_no_store_holds_is_404(server: Served, body: bytes, status: int) -> None:
    assert _post(server, {"user": "rolled", "messages": HI}).status_code == 200
    r = httpx.post(f"{server.root}/v1/sessions/rolled/rollback", content=body, headers=A)
    _error(r, status)

"""Reply checks as tables: ``Retry-After`` values and chat-completion bodies."""

from __future__ import annotations

import email.utils
import json

import pytest

from promptweave.models import BackendError
from promptweave.models.replies import parse_chat_completion, parse_retry_after, retry_after_from, token_count

NOW = 1_700_000_000.0


@pytest.mark.parametrize("value, expected", [
    ("0", 0.0), ("7", 7.0), (" 12 ", 12.0), ("0.25", 0.25), ("1.5", 1.5),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date in the past: no wait
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("nan", None), ("NaN", None), ("inf", None), ("-inf", None), ("Infinity", None), ("-1", None),
    ("-0.5", None), ("+3", None), ("1e3", None), ("0x10", None), ("", None), ("   ", None),
    ("soon", None), ("1,5", None), ("12345678901", None), ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
    (None, None), (3, None), ("5" * 100, None),
])
def test_retry_after_values(value: object, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_retry_after_ms_first_and_bad_headers_ignored() -> None:
    assert retry_after_from({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert retry_after_from({"retry-after": "nan"}) is None
    assert retry_after_from(None) is None and retry_after_from(object()) is None


@pytest.mark.parametrize("value, expected", [
    (0, 0), (12, 12), (12.0, 12), (-1, None), (1.5, None), (True, None), ("12", None),
    (float("nan"), None), (float("inf"), None), (None, None), ([3], None),
])
def test_token_counts(value: object, expected: int | None) -> None:
    assert token_count(value) == expected


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_good_reply_and_length_finish() -> None:
    body = _body(choices=[{"message": {"role": "assistant", "content": "Hallo"}, "finish_reason": "length"}],
                 usage={"prompt_tokens": 5, "completion_tokens": 1})
    c = parse_chat_completion(body)
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == ("Hallo", 5, 1, "length")


def test_text_parts_are_joined_and_missing_usage_is_zero() -> None:
    body = _body(choices=[{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}])
    c = parse_chat_completion(body)
    assert c.text == "ab" and c.prompt_tokens == 0 and c.finish_reason is None


def test_refusal_is_not_retried() -> None:
    with pytest.raises(BackendError) as err:
        parse_chat_completion(_body(choices=[{"message": {"content": None, "refusal": "I can't help"}}]))
    assert not err.value.retryable and str(err.value) == "the model refused: I can't help"


@pytest.mark.parametrize("body, what", [
    (b"<html>", "not JSON"), (b"null", "a JSON null"), (b"[1]", "a JSON array"),
    (_body(choices=[{"message": {"content": 3}}]), "content is a JSON number"),
    (_body(choices=[{"message": {"content": "x"}}], usage={"prompt_tokens": -1}), "usage.prompt_tokens"),
])
def test_malformed_bodies_are_retryable_with_an_excerpt(body: bytes, what: str) -> None:
    with pytest.raises(BackendError) as err:
        parse_chat_completion(body, "application/json; charset=utf-8")
    message = str(err.value)
    assert err.value.retryable and err.value.kind == "malformed"
    assert message.startswith(f"malformed reply: {what}") and "(HTTP 200, application/json)" in message
    assert body.decode()[:20] in message


_CONNECT_PROBE = """
import asyncio, resource, socket, sys
import aiohttp
from promptweave.models.replies import is_connect_failure

async def main():
    listening = socket.socket(); listening.bind(("127.0.0.1", 0)); listening.listen(8)
    port = listening.getsockname()[1]
    session = aiohttp.ClientSession()
    closed = socket.socket(); closed.bind(("127.0.0.1", 0)); refused = closed.getsockname()[1]; closed.close()
    out = []
    for target, starve in ((refused, False), (port, True)):
        held = []
        if starve:  # this process, not the server, runs out of file descriptors
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
            try:
                while True:
                    held.append(open("/dev/null"))
            except OSError:
                pass
        try:
            await session.get(f"http://127.0.0.1:{target}/")
        except Exception as exc:
            out.append(is_connect_failure(exc))
        for f in held:
            f.close()
    await session.close()
    print(out)

asyncio.run(main())
"""


def test_running_out_of_file_descriptors_is_no_word_on_the_server() -> None:
    """A client out of file descriptors (too many concurrent requests for ``ulimit -n``) cannot
    connect, but the server may be fine: the breaker must not call it unreachable. A refusal is."""
    import subprocess
    import sys

    pytest.importorskip("aiohttp")
    res = subprocess.run([sys.executable, "-c", _CONNECT_PROBE], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "[True, False]", res.stderr

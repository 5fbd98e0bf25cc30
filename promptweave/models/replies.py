"""What a server sends back, checked before anything trusts it: the chat-completion body and the
``Retry-After`` header.

Every backend that reads a server's reply goes through here, so that a reply of the wrong shape
(HTML from a proxy, ``null``, a list, no ``choices[0].message``, content that is not text,
negative or non-numeric ``usage``) is one retryable :class:`BackendError` saying what was wrong,
with a short excerpt of the body, and never an ``AttributeError`` deep in a step.
"""

from __future__ import annotations

import errno
import json
import math
import re
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Any

from .. import secrets
from .base import BackendError, Completion

#: the longest excerpt of a bad body quoted in an error (errors land in every failed row)
EXCERPT = 160
_SECONDS = re.compile(r"\d{1,10}(\.\d{1,6})?")
# a root cause of one of these (or an exception class of one of these names) means no connection
# could be made at all: the endpoint is down or misnamed, which the runtime's circuit breaker counts
_CONNECT_FAILURES: tuple[type[BaseException], ...] = (ConnectionRefusedError, socket.gaierror)
_CONNECT_NAMES = {"ClientConnectorError", "ClientConnectorDNSError", "ConnectError"}
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE)


def excerpt(body: bytes | str, n: int = EXCERPT) -> str:
    """One line of at most ``n`` characters from ``body``, secrets scrubbed."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    text = secrets.scrub(" ".join(text[: 4 * n].split()))
    return text if len(text) <= n else text[: n - 3] + "..."


def malformed(what: str, body: bytes | str, content_type: str | None = None, status: int = 200) -> BackendError:
    """The error for a 2xx reply that is not a usable chat completion; retryable, since a proxy
    page or a half-written body is usually gone on the next try."""
    ctype = f", {content_type.split(';')[0].strip()}" if content_type else ""
    return BackendError(f"malformed reply: {what} (HTTP {status}{ctype}): {excerpt(body) or '<empty>'}",
                        retryable=True, kind="malformed")


def parse_retry_after(value: object, *, millis: bool = False, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110: delay-seconds or an HTTP-date; a
    decimal fraction is accepted, as many servers send one), or ``None`` for anything else:
    ``nan``, ``inf``, negative numbers, garbage. ``millis`` reads OpenAI's ``retry-after-ms``."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text) / (1000.0 if millis else 1.0)
        return seconds if math.isfinite(seconds) else None
    if millis or not text or len(text) > 64:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # RFC dates are GMT; a zone-less one is not a date we trust
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_from(headers: Any) -> float | None:
    """The wait a response's headers ask for (``retry-after-ms`` first), or ``None``."""
    if not headers:
        return None
    try:
        for name, millis in (("retry-after-ms", True), ("retry-after", False)):
            seconds = parse_retry_after(headers.get(name), millis=millis)
            if seconds is not None:
                return seconds
    except Exception:  # noqa: BLE001 - a headers object of an unexpected kind is no wish at all
        return None
    return None


def is_connect_failure(exc: BaseException) -> bool:
    """No connection was made (refused, unknown host), whichever transport said so and however
    it wrapped it: the whole cause/context chain is searched."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        chain.append(node)
        node = node.__cause__ or node.__context__
    if any(isinstance(n, OSError) and n.errno in _OUT_OF_FILES for n in chain):
        return False  # this machine ran out of file descriptors: no word on the server
    return any(isinstance(n, _CONNECT_FAILURES) or type(n).__name__ in _CONNECT_NAMES for n in chain)


def token_count(value: object) -> int | None:
    """A usage count as an int: ints and integral floats >= 0; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def parse_chat_completion(body: bytes, content_type: str | None = None, status: int = 200) -> Completion:
    """A :class:`Completion` from the body of a 2xx ``/chat/completions`` reply, or a
    ``malformed reply`` :class:`BackendError` naming the first thing wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise (malformed("not JSON", body, content_type, status))
    if not isinstance(data, dict):
        raise (malformed(f"a JSON {_kind(data)}, not an object", body, content_type, status))
    if "error" in data and "choices" not in data:  # some servers put an error in a 200
        raise (malformed("an error object", body, content_type, status))
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise (malformed("no choices", body, content_type, status))
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise (malformed("choices[0] has no message", body, content_type, status))
    content = message.get("content")
    if content is None:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:  # the model declined: asking again gets the same
            raise BackendError(f"the model refused: {excerpt(refusal)}", retryable=False, kind="refusal")
        raise (malformed("the message has no content", body, content_type, status))
    if isinstance(content, list):  # content parts, as some servers send them: text parts only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise (malformed("content parts that are not all text", body, content_type, status))
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise (malformed(f"content is a JSON {_kind(content)}, not text", body, content_type, status))
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise (malformed("finish_reason is not text", body, content_type, status))
    usage = data.get("usage")
    prompt_tokens = completion_tokens = 0
    if usage is not None:
        if not isinstance(usage, dict):
            raise (malformed("usage is not an object", body, content_type, status))
        counts = []
        for name in ("prompt_tokens", "completion_tokens"):
            raw = usage.get(name)
            count = 0 if raw is None else token_count(raw)
            if count is None:
                raise (malformed(f"usage.{name} is not a count", body, content_type, status))
            counts.append(count)
        prompt_tokens, completion_tokens = counts
    return Completion(text=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      finish_reason=finish[:40] if finish else None)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")

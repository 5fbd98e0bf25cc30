"""The OpenAI wire format: request checks, error bodies, responses and SSE chunks."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..memory.store import check_storable

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


class APIError(Exception):
    """An error answered as ``{"error": {message, type, param, code}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
                              502: "api_error", 503: "api_error"}.get(status, "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields we act on; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    # strict: "yes", 1, "10", true or 2.0 are refused, not read as true / 10 / 1 / 2 (a client that
    # sends them has a bug it should hear about, as OpenAI's API tells it)
    model: str | None = Field(None, strict=True)
    messages: list[ChatMessageIn] = Field(..., min_length=1)
    stream: bool = Field(False, strict=True)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    max_tokens: int | None = Field(None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    user: str | None = Field(None, strict=True)
    n: int | None = Field(None, ge=1, le=1, strict=True)


def parse_json_body(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, f"the request body is not valid UTF-8 (byte {exc.start}); send UTF-8 JSON",
                       code="invalid_encoding") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                            f"{exc.colno})", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    except _DuplicateKey as exc:
        raise APIError(400, f"the request body names '{exc.args[0]}' twice in one object; send each field once",
                       param=exc.args[0], code="invalid_json") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
        raise APIError(400, f"the request body is not usable JSON ({' '.join(str(exc).split())[:120]})",
                       code="invalid_json") from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats: which of two ``user`` fields a server reads
    (the last, in Python) is not something a client should have to guess."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse_chat_request(data: Any, max_tokens_limit: int) -> ChatRequest:
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_request")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        raise APIError(400, f"'{param}': {err['msg']}", param=param, code="invalid_value") from None
    limit = req.max_completion_tokens or req.max_tokens
    if limit is not None and limit > max_tokens_limit:
        field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise APIError(400, f"'{field}' is {limit}; this server allows at most {max_tokens_limit}",
                       param=field, code="invalid_value")
    for i, m in enumerate(req.messages):
        if m.role not in {"system", "developer", "user", "assistant"}:
            raise APIError(400, f"'messages.{i}.role' must be system, user or assistant (got {m.role!r})",
                           param=f"messages.{i}.role", code="invalid_value")
    if req.messages[-1].role != "user":
        raise APIError(400, "the last message must be the user's", param="messages", code="invalid_value")
    return req


def text_of(msg: ChatMessageIn, index: int) -> str:
    """Text content; text parts are joined, any other part is refused."""
    if msg.content is None:
        return ""
    text = msg.content if isinstance(msg.content, str) else _parts_text(msg.content, index)
    try:
        check_storable(text)
    except ValueError as exc:
        raise APIError(400, f"'messages.{index}.content': {exc}", param=f"messages.{index}.content",
                       code="invalid_value") from None
    return text


def _parts_text(parts: list[dict[str, Any]], index: int) -> str:
    out = []
    for part in parts:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise APIError(400, f"'messages.{index}.content': only text parts are supported",
                           param=f"messages.{index}.content", code="invalid_value")
        out.append(part["text"])
    return "\n".join(out)


def session_id(header: str | None, user: str | None) -> str:
    """The conversation's id: the X-Session-Id header or the ``user`` field; both may be given
    only when they agree (a turn stored under the one the client did not mean is not undone)."""
    if header is not None and user is not None and header != user:
        raise APIError(400, f"the X-Session-Id header ({header[:40]!r}) and the 'user' field ({user[:40]!r}) name "
                            "different conversations; send one, or the same id in both",
                       param="user", code="conflicting_session")
    sid = header if header is not None else user
    if sid is None:
        raise APIError(400, "name the conversation: send the 'user' field or an X-Session-Id header",
                       param="user", code="missing_session")
    check_session_id(sid)
    return sid


def check_session_id(sid: str) -> None:
    if not SESSION_ID.match(sid):
        raise APIError(400, "a session id is 1-128 characters of letters, digits and . _ : @ - "
                            "(starting with a letter or digit)", param="user", code="invalid_session_id")


def completion_body(cid: str, model: str, text: str, prompt_tokens: int, completion_tokens: int,
                    finish_reason: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason or "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            **extra}


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def sse_chunks(cid: str, model: str, text: str, finish_reason: str | None) -> list[bytes]:
    """The reply as OpenAI stream chunks: the role, the text word by word, the finish, [DONE]."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    pieces = re.findall(r"\S+\s*|\s+", text) or [""]
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in pieces if p]
    out.append(chunk({}, finish_reason or "stop"))
    out.append(b"data: [DONE]\n\n")
    return out

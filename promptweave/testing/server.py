"""A zero-latency OpenAI-compatible chat server with fault injection, for tests and benchmarks.

It is a bare asyncio HTTP/1.1 server (keep-alive, Content-Length bodies) rather than
FastAPI/uvicorn: on a 2-core machine the client under test and this server share the CPU, and
a framework's per-request cost would show up in every benchmark (see benchmarks/RESULTS.md).

Run it as its own process::

    python -m promptweave.testing.server --port 0 --seed 1 --p429 0.1 --retry-after 0.2

It prints ``READY http://127.0.0.1:PORT/v1`` on stdout once it accepts connections.

Endpoints:

- ``POST /v1/chat/completions``: the last user turn echoed (or ``--reply TEXT``, where
  ``{echo}`` stands for that turn; ``--rules '[["regex", "reply"], ...]'`` picks the reply by
  the first regex that matches the last user turn) with real ``usage`` counts (whitespace tokens), or a fault;
  ``--canned '[{"match": regex, "status": 200, "body": "<html>", "type": "text/html", "headers": {...}}]'``
  answers a matching request with that raw status, body and headers (replies of any shape).
- ``GET /stats``: ``{"requests": n, "by_status": {"200": n, "429": n, "reset": n, ...}}``.
- ``GET /log``: per request key (a hash of the request body, equal across retries) the
  ``[arrival, sent, outcome, retry_after]`` of each arrival, in seconds of the server's clock;
  the last user turn of each key; SHA-256 hashes of the Authorization headers seen.
- ``POST /control``: ``{"faults": {...}, "reset": true}`` changes faults and/or clears counters.

Faults are drawn per (seed, request key, arrival number of that key), so a run sees the same
faults whatever the order in which concurrent requests arrive. Every setting also reads a
``PW_TESTSERVER_<NAME>`` environment variable as its default (e.g. ``PW_TESTSERVER_P500=0.1``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
# fault settings given as text on the command line (the rest take their default's type)
_TEXT_SETTINGS = ("reply", "fail_match", "rules", "bad_body", "bad_type", "finish_reason", "retry_after_header",
                  "canned")


@dataclass
class _State:
    faults: Faults
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    log: dict[str, list[list[Any]]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    auth: set[str] = field(default_factory=set)
    fail_re: re.Pattern[str] | None = None
    rules: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    canned: list[tuple[re.Pattern[str], dict[str, Any]]] = field(default_factory=list)

    def reply_for(self, last: str) -> str:
        """The first rule whose regex matches the last user turn, else the fixed reply."""
        for pattern, reply in self.rules:
            if pattern.search(last):
                return reply
        return self.faults.reply

    def reset(self) -> None:
        self.requests = 0
        self.by_status.clear()
        self.log.clear()
        self.texts.clear()
        self.auth.clear()

    def count(self, outcome: str) -> None:
        self.by_status[outcome] = self.by_status.get(outcome, 0) + 1


def _draw(seed: int, key: str, n: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{key}:{n}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _last_user(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _words(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def _response(status: int, body: bytes, *, keep_alive: bool, extra: str = "",
              content_type: str = "application/json") -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n{extra}" + ("" if keep_alive else "connection: close\r\n") + "\r\n")
    return head.encode("latin-1") + body


def _json(status: int, obj: Any, *, keep_alive: bool, extra: str = "") -> bytes:
    return _response(status, json.dumps(obj).encode(), keep_alive=keep_alive, extra=extra)


class _Plan:
    """What to send for one request: bytes now, or after ``wait`` seconds, or a reset."""

    __slots__ = ("payload", "wait", "reset", "key", "index", "retry_after")

    def __init__(self, payload: bytes | None, wait: float = 0.0, reset: bool = False,
                 key: str | None = None, index: int = -1, retry_after: float | None = None) -> None:
        self.payload, self.wait, self.reset = payload, wait, reset
        self.key, self.index, self.retry_after = key, index, retry_after


class App:
    def __init__(self, faults: Faults) -> None:
        faults.check()
        self.state = _State(faults)
        self._compile()

    def _compile(self) -> None:
        pattern = self.state.faults.fail_match
        self.state.fail_re = re.compile(pattern) if pattern else None
        rules = json.loads(self.state.faults.rules) if self.state.faults.rules else []
        self.state.rules = [(re.compile(rx, re.S), str(reply)) for rx, reply in rules]
        canned = self.state.faults.canned_answers()
        self.state.canned = [(re.compile(c["match"], re.S), c) for c in canned]

    def now(self) -> float:
        return time.monotonic() - self.state.started

    def handle(self, method: str, target: str, body: bytes, keep_alive: bool, auth: str | None = None) -> _Plan:
        path = target.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            if method != "POST":
                return _Plan(_json(405, {"error": {"message": "use POST"}}, keep_alive=keep_alive))
            if auth:  # only a hash: a test can check which key arrived without the server keeping it
                self.state.auth.add(hashlib.sha256(auth.encode()).hexdigest())
            return self.chat(body, keep_alive, auth)
        if path == "/stats":
            st = self.state
            return _Plan(_json(200, {"requests": st.requests, "by_status": st.by_status}, keep_alive=keep_alive))
        if path == "/log":
            st = self.state
            return _Plan(_json(200, {"log": st.log, "texts": st.texts, "auth": sorted(st.auth)}, keep_alive=keep_alive))
        if path == "/health":
            return _Plan(_json(200, {"ok": True}, keep_alive=keep_alive))
        if path == "/control" and method == "POST":
            return self.control(body, keep_alive)
        return _Plan(_json(404, {"error": {"message": f"no route {path}"}}, keep_alive=keep_alive))

    def control(self, body: bytes, keep_alive: bool) -> _Plan:
        try:
            req = json.loads(body or b"{}")
            names = {f.name for f in dataclasses.fields(Faults)}
            updates = req.get("faults") or {}
            unknown = set(updates) - names
            if unknown:
                raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
            faults = dataclasses.replace(self.state.faults, **updates)
            faults.check()
        except (ValueError, TypeError, AttributeError) as exc:
            return _Plan(_json(400, {"error": {"message": str(exc)}}, keep_alive=keep_alive))
        self.state.faults = faults
        self._compile()
        if req.get("reset"):
            self.state.reset()
        return _Plan(_json(200, {"faults": dataclasses.asdict(faults)}, keep_alive=keep_alive))

    def chat(self, body: bytes, keep_alive: bool, auth: str | None = None) -> _Plan:
        st, f = self.state, self.state.faults
        arrival = self.now()
        st.requests += 1
        key = hashlib.blake2b(body, digest_size=8).hexdigest()
        entries = st.log.setdefault(key, [])
        index = len(entries)
        try:
            req = json.loads(body)
            messages = req["messages"]
        except (ValueError, KeyError, TypeError):
            entries.append([arrival, arrival, "400", None])
            st.count("400")
            return _Plan(_json(400, {"error": {"message": "body must be JSON with 'messages'"}},
                               keep_alive=keep_alive))
        last = _last_user(messages)
        if key not in st.texts:
            st.texts[key] = last[:200]
        outcome = "200"
        for pattern, answer in st.canned:
            if pattern.search(last):
                status = int(answer.get("status", 200))
                entries.append([arrival, None, f"canned {status}", None])
                st.count(f"canned {status}")
                extra = "".join(f"{k}: {v}\r\n" for k, v in (answer.get("headers") or {}).items())
                payload = _response(status, str(answer.get("body", "")).encode(), keep_alive=keep_alive, extra=extra,
                                    content_type=str(answer.get("type", "application/json")))
                return _Plan(payload, wait=f.delay, key=key, index=index)
        if st.fail_re is not None and st.fail_re.search(last):
            outcome = str(f.fail_status)
        else:
            u, acc = _draw(f.seed, key, index), 0.0
            for label, share in f.shares():
                acc += share
                if u < acc:
                    outcome = label
                    break
        entries.append([arrival, None, outcome, f.retry_after if outcome == "429" else None])
        st.count(outcome)
        if outcome == "reset":
            return _Plan(None, wait=f.delay, reset=True, key=key, index=index)
        if outcome == "hang":
            return self._ok(req, last, keep_alive, wait=f.delay + f.hang_seconds, key=key, index=index)
        if outcome == "truncated":
            plan = self._ok(req, last, keep_alive, wait=f.delay, key=key, index=index)
            assert plan.payload is not None
            body = plan.payload[plan.payload.index(b"\r\n\r\n") + 4:]
            plan.payload = _response(200, body[: max(1, len(body) // 2)], keep_alive=False)
            return plan
        if outcome == "bad":
            return _Plan(_response(200, f.bad_body.encode(), keep_alive=keep_alive, content_type=f.bad_type),
                         wait=f.delay, key=key, index=index)
        if outcome != "200":
            status = int(outcome)
            header = f.retry_after_header if f.retry_after_header is not None else f"{f.retry_after:g}"
            extra = f"retry-after: {header}\r\n" if status == 429 else ""
            message = f"injected {status}"
            if f.echo_key and auth:  # what careless servers do: the key whole, and its middle again
                secret = auth.removeprefix("Bearer ").strip()
                message += f"; incorrect API key provided: {secret} (key {secret[:3]}...{secret[3:-3]}...)"
            err = {"error": {"message": message, "type": "injected", "code": status}}
            return _Plan(_json(status, err, keep_alive=keep_alive, extra=extra), wait=f.delay, key=key,
                         index=index, retry_after=f.retry_after if status == 429 else None)
        return self._ok(req, last, keep_alive, wait=f.delay, key=key, index=index)

    def _ok(self, req: dict[str, Any], last: str, keep_alive: bool, *, wait: float, key: str,
            index: int) -> _Plan:
        text = self.state.reply_for(last).replace("{echo}", last)
        prompt_tokens = _words(req.get("messages"))
        completion_tokens = max(1, len(text.split()))
        obj = {
            "id": f"chatcmpl-{key}{index}", "object": "chat.completion", "created": int(time.time()),
            "model": str(req.get("model", "test")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": self.state.faults.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return _Plan(_json(200, obj, keep_alive=keep_alive), wait=wait, key=key, index=index)

    def sent(self, plan: _Plan) -> None:
        if plan.key is not None:
            self.state.log[plan.key][plan.index][1] = self.now()


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests on one connection are answered in order."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.pending is not None:
            self.pending.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        while self.pending is None and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 1 << 20:
                    self.transport.close()
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self.transport.close()
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4: end + 4 + length])
            del self.buf[: end + 4 + length]
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            plan = self.app.handle(method, target, body, keep_alive, headers.get("authorization"))
            if plan.wait > 0:
                self.pending = asyncio.ensure_future(self._later(plan))
                return
            self._send(plan)

    async def _later(self, plan: _Plan) -> None:
        await asyncio.sleep(plan.wait)
        self.pending = None
        self._send(plan)
        if self.transport is not None:
            self._process()

    def _send(self, plan: _Plan) -> None:
        t = self.transport
        if t is None:
            return
        if plan.reset:
            sock = t.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST, the client sees a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.abort()
            return
        assert plan.payload is not None
        t.write(plan.payload)
        self.app.sent(plan)
        if b"\r\nconnection: close\r\n" in plan.payload[:512]:
            t.close()


async def serve_forever(host: str, port: int, faults: Faults, *, watch_stdin: bool = False) -> None:
    app = App(faults)
    await serve_app(lambda: _Connection(app), host, port, watch_stdin=watch_stdin)


async def serve_app(protocol: Any, host: str, port: int, *, watch_stdin: bool = False) -> None:
    """Serve ``protocol`` (a connection factory) until SIGTERM/SIGINT, or until stdin closes when
    ``watch_stdin``; prints ``READY <base url>`` once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:  # the parent holds our stdin; when it dies (even SIGKILLed) we see EOF and leave
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch() -> None:
            while await reader.read(4096):
                pass
            stop.set()

        watcher = asyncio.ensure_future(watch())
    print(f"READY http://{host}:{bound}/v1", flush=True)
    async with server:
        await stop.wait()
    if watch_stdin:
        watcher.cancel()


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a yes/no value: {text!r}")


def _kind(name: str, default: Any) -> Any:
    if name in _TEXT_SETTINGS:
        return str
    return _flag if isinstance(default, bool) else type(default)


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(f"PW_TESTSERVER_{name.upper()}")
    if value is None:
        return default
    return _kind(name, default)(value) if default is not None else value


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Faults]:
    d = Faults()
    p = argparse.ArgumentParser(prog="python -m promptweave.testing.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=_env("port", 0), help="0 picks a free port")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (the parent died)")
    for f in dataclasses.fields(Faults):
        default = _env(f.name, getattr(d, f.name))
        kind = _kind(f.name, getattr(d, f.name))
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default)
    args = p.parse_args(argv)
    faults = Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})
    try:
        faults.check()
    except ValueError as exc:
        p.error(str(exc))
    return args, faults


def main(argv: list[str] | None = None) -> None:
    args, faults = parse_args(argv)
    asyncio.run(serve_forever(args.host, args.port, faults, watch_stdin=args.watch_stdin))


if __name__ == "__main__":
    main()

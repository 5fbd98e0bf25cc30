"""Reading a ``results.jsonl`` that may be damaged: every readable record, wherever the damage is.

A crash leaves a torn last line; a power loss leaves NUL padding, sometimes with a later record
written right behind it; an editor or a bad disk leaves a corrupt line in the middle or invalid
UTF-8. :func:`scan_records` walks the file once and yields each record it can read, with its
byte range, and each piece it cannot, with the reason, so that the caller keeps every good row,
reports the lines it skipped and keeps the dropped bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

_PIECES = re.compile(rb"[^\x00]+")  # a line split at NUL runs
_RECORD_START = '{"key":'  # how the engine writes every record (key first)
_STATUSES = {"ok", "error"}
_DECODER = json.JSONDecoder()


class Piece(NamedTuple):
    """A record read (``record`` set) or bytes dropped (``reason`` set), at ``[start, end)``."""

    lineno: int
    record: dict[str, Any] | None
    start: int
    end: int
    raw: bytes
    reason: str


def record_problem(obj: Any) -> str | None:
    """Why ``obj`` is not a usable results record (None when it is)."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a record"
    if not isinstance(obj.get("key"), str) or not obj["key"]:
        return "no 'key' (a string)"
    if obj.get("status") not in _STATUSES:
        return "'status' is not ok/error"
    for name in ("fields", "outputs"):
        if not isinstance(obj.get(name), dict):
            return f"'{name}' is not an object"
    if "index" in obj and (not isinstance(obj["index"], int) or isinstance(obj["index"], bool)):
        return "'index' is not an integer"
    if "fp" in obj and not isinstance(obj["fp"], str):
        return "'fp' is not a string"
    if "error" in obj and not isinstance(obj["error"], dict):
        return "'error' is not an object"
    return None


def parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(record, "") or (None, why not)."""
    try:
        obj = json.loads(raw.decode("utf-8", "surrogatepass"))  # as store.py writes lone surrogates
    except UnicodeDecodeError:
        return None, "invalid UTF-8"
    except (ValueError, RecursionError):
        return None, "not JSON"
    problem = record_problem(obj)
    return (obj, "") if problem is None else (None, problem)


def _salvage(text: bytes, why: str) -> Iterator[tuple[dict[str, Any] | None, int, int, bytes, str]]:
    """Whole records inside a damaged piece: each starts at ``{"key":`` and is decoded as a
    prefix, so a torn record before it or junk after it is cut off and dropped, never the record
    itself. Yields (record or None, start, end, bytes, reason) with byte offsets into ``text``."""
    s = text.decode("utf-8", "surrogateescape")  # undecodable bytes survive the round trip

    def at(i: int) -> int:
        return len(s[:i].encode("utf-8", "surrogateescape"))

    pos = 0
    start = s.find(_RECORD_START)
    while start != -1:
        try:
            obj, end = _DECODER.raw_decode(s, start)
            s[start:end].encode("utf-8", "strict")  # a record with undecodable bytes is damaged
        except (ValueError, RecursionError, UnicodeEncodeError):
            obj = None
        if obj is not None and record_problem(obj) is None:
            if s[pos:start].strip():
                yield None, at(pos), at(start), text[at(pos):at(start)], why
            a, b = at(start), at(end)
            yield obj, a, b, text[a:b], ""
            pos = end
        start = s.find(_RECORD_START, max(start + 1, pos))
    if s[pos:].strip():
        yield None, at(pos), len(text), text[at(pos):], why


def scan_records(f: BinaryIO) -> Iterator[Piece]:
    """Every piece of the file, in order, with absolute byte offsets."""
    pos = 0
    for lineno, raw in enumerate(iter(f.readline, b""), start=1):
        body = raw[:-1] if raw.endswith(b"\n") else raw
        for m in _PIECES.finditer(body):
            piece = m.group()
            text = piece.strip()
            if not text:
                yield Piece(lineno, None, pos + m.start(), pos + m.end(), piece, "blank")
                continue
            start = pos + m.start() + len(piece) - len(piece.lstrip())
            rec, why = parse_record(text)
            if rec is not None:
                yield Piece(lineno, rec, start, start + len(text), text, "")
                continue
            for found, a, b, chunk, reason in _salvage(text, why):
                yield Piece(lineno, found, start + a, start + b, chunk, reason)
        if b"\x00" in body:
            yield Piece(lineno, None, pos, pos, b"", "NUL bytes")
        pos += len(raw)

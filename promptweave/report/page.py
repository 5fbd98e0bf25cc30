"""Assemble one self-contained HTML page: inline CSS and JavaScript shipped in the package
(``assets/``), inline SVG charts, and the segment data as a JSON blob.

Safety: the page sets a Content-Security-Policy of ``default-src 'none'`` with the inline script
and style allowed by their SHA-256 hashes, so nothing is ever fetched and no injected script
could run. Text goes into HTML through :func:`html.escape`; the JSON blob through
:func:`json_for_script`, which escapes ``<``, ``>``, ``&`` and U+2028/U+2029 so no ``</script>``
or ``<!--`` in a model's reply can end or alter the blob.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from html import escape
from pathlib import Path
from importlib import resources
from typing import Any

from ..errors import DataError

_JS_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
               0x2028: "\\u2028", 0x2029: "\\u2029"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class ScriptJSON(str):
    """Text :func:`json_for_script` made (safe inside ``<script type="application/json">``)."""


def json_for_script(data: Any) -> ScriptJSON:
    """JSON that is safe inside ``<script type="application/json">`` and that ``JSON.parse``
    reads: NaN and infinities (which Python writes as bare ``NaN``/``Infinity``, and which made
    the browser's parse, and so the whole segment browser, fail) become ``null``."""
    return script_json(json_text(data))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)


def json_text(data: Any) -> str:
    """Compact JSON with NaN and infinities as ``null``, not yet escaped for a script: the
    pieces of a blob can be written apart and joined (:func:`script_json` of the whole). One
    encoder for every call (``json.dumps`` with options builds one per call: a third of a
    segment row's cost)."""
    try:
        return _ENCODER.encode(data)
    except ValueError:  # rare: a non-finite number somewhere; rebuilt without it
        return _ENCODER.encode(_finite(data))


def script_json(text: str) -> ScriptJSON:
    """JSON text (:func:`json_text`) made safe inside ``<script type="application/json">``."""
    return ScriptJSON(text.translate(_JS_ESCAPES))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


class BlobParts(tuple):  # type: ignore[type-arg]
    """A script-safe JSON blob in pieces, each :class:`ScriptJSON` or already page bytes
    (:func:`page_bytes`): a big blob is not copied into one string, then into the page's."""


def page_bytes(text: str) -> bytes:
    """Page text as UTF-8. A lone surrogate (a JSON ``\\ud800`` escape in a model's reply decodes
    to one) cannot be encoded; such characters become U+FFFD instead of failing the page."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def write_page(path: Path, text: str | list[str | bytes]) -> None:
    """Write a page (text, or its pieces: :func:`page_parts`) as UTF-8 (:func:`page_bytes`),
    atomically: a temporary file beside it, then renamed."""
    parts = [text] if isinstance(text, str) else text
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part if isinstance(part, bytes) else page_bytes(part))
        tmp.replace(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be written ({exc.strerror or exc}); give a writable path") from None


@functools.lru_cache(maxsize=None)
def asset(name: str) -> str:
    """A file from ``promptweave/report/assets`` (package data, inlined into every page; read
    once per process)."""
    return resources.files("promptweave.report").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def page(title: str, body: str, data: Any | None = None, script: bool = True) -> str:
    """The whole document (:func:`page_parts` joined)."""
    return joined(page_parts(title, body, data, script))


def joined(parts: list[str | bytes]) -> str:
    """Pieces of a page (:func:`page_parts`) as one text."""
    return "".join(p if isinstance(p, str) else p.decode("utf-8") for p in parts)


def page_parts(title: str, body: str, data: Any | None = None, script: bool = True) -> list[str | bytes]:
    """The whole document, in pieces for :func:`write_page`. ``data`` (if any) is embedded as
    ``#pw-data`` for the script; a :class:`ScriptJSON` or :class:`BlobParts` is embedded as it is
    (serialised earlier by :func:`json_for_script`)."""
    css = asset("report.css")
    js = asset("report.js") if script else ""
    csp = f"default-src 'none'; style-src {_hash(css)}; img-src data:"
    if js:
        csp += f"; script-src {_hash(js)}"
    parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f'<meta http-equiv="Content-Security-Policy" content="{escape(csp, quote=False)}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(title)}</title><style>{css}</style></head><body>", body]
    out: list[str | bytes] = ["".join(parts)]
    if data is not None:
        blob = data if isinstance(data, (ScriptJSON, BlobParts)) else json_for_script(data)
        out.append('<script type="application/json" id="pw-data">')
        out += blob if isinstance(blob, BlobParts) else [blob]
        out.append("</script>")
    out.append((f"<script>{js}</script>" if js else "") + "</body></html>\n")
    return out


def table(head: list[tuple[str, str]], rows: list[list[tuple[str, Any]]], table_id: str = "",
          sortable: bool = True) -> str:
    """A table; ``head`` is ``(label, css class)``; cells are ``(html, sort value)`` (the html is
    already escaped by the caller; the sort value goes into ``data-v``)."""
    ident = f' id="{escape(table_id)}"' if table_id else ""
    ths = "".join(f'<th class="{cls}{" sortable" if sortable else ""}"'
                  f'{f" data-col={chr(34)}{escape(label)}{chr(34)}" if "num" in cls else ""}>{escape(label)}</th>'
                  for label, cls in head)
    trs = []
    for row in rows:
        tds = "".join(f'<td class="{head[i][1]}" data-v="{escape("" if v is None else str(v))}">{h}</td>'
                      for i, (h, v) in enumerate(row))
        trs.append(f"<tr>{tds}</tr>")
    return f"<table{ident}><thead><tr>{ths}</tr></thead><tbody>{''.join(trs)}</tbody></table>"

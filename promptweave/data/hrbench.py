"""HR-Bench: its TSV/parquet files, answer letters, and accuracy as the benchmark reports it.

HR-Bench (Wang et al., AAAI 2025) ships one TSV (or parquet) per resolution with columns
``index, question, answer, category, A, B, C, D, cycle_category, image``; ``image`` is base64,
or (VLMEvalKit's convention) the ``index`` of an earlier row whose image it shares. Images are
written once to a content-addressed folder beside the file (``<name>.images/``), so that rows,
results and caches carry a short path, never megabytes of base64. Image folders with a JSONL or
CSV of questions need no special reader: their ``image`` column holds paths.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError, MissingDependency

_NEEDED = {"question", "answer", "A", "B", "image"}
LETTERS = "ABCDEFGH"


def claims(p: Path, fmt: str) -> bool:
    """Whether ``p`` is an HR-Bench-style file this module reads (parquet, or a TSV whose header
    has question, answer, A, B and image)."""
    if fmt not in ("auto", "tsv") or not p.is_file():
        return False
    if p.suffix.lower() == ".parquet":
        return True
    if p.suffix.lower() != ".tsv":
        return False
    with open(p, encoding="utf-8-sig", errors="replace") as f:
        header = f.readline(1 << 16).rstrip("\r\n").split("\t")
    return _NEEDED <= set(header)


def _image_dir(p: Path) -> Path:
    d = p.with_name(p.stem + ".images")
    try:
        d.mkdir(exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    fallback = Path.home() / ".cache" / "promptweave" / "hrbench-images"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _store(data: bytes, folder: Path) -> str:
    digest = hashlib.sha256(data).hexdigest()
    ext = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg" if data[:3] == b"\xff\xd8\xff" else ".img"
    path = folder / f"{digest[:32]}{ext}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def _records(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if p.suffix.lower() == ".parquet":
        try:
            import pandas as pd
        except ImportError as exc:
            raise MissingDependency("pandas and pyarrow", "hrbench-parquet", exc) from None
        try:
            frame = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types; report one line
            raise DataError(f"{p}: cannot read parquet: {type(exc).__name__}: {str(exc)[:200]}") from None
        for i, rec in enumerate(frame.to_dict(orient="records"), start=2):
            yield i, rec
        return
    csv.field_size_limit(sys.maxsize)  # an 8K image is tens of MB of base64 in one cell
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t")  # quoted as pandas writes it (VLMEvalKit's TSVs)
        header = next(reader, None)
        if header is None:
            return
        for n, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise DataError(f"{p}:{n}: {len(cells)} columns where the header has {len(header)}")
            yield n, dict(zip(header, cells))


def read_rows(p: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, row)`` of an HR-Bench TSV/parquet, ``image`` replaced by the path of the stored image."""
    folder = _image_dir(p)
    by_index: dict[str, str] = {}
    try:
        for line, rec in _records(p):
            raw = rec.get("image")
            if isinstance(raw, dict):  # parquet of HF datasets: {"bytes": ..., "path": ...}
                raw = raw.get("bytes")
            if isinstance(raw, (bytes, bytearray)):
                path = _store(bytes(raw), folder)
            else:
                text = str(raw or "").strip()
                if len(text) <= 64 and text in by_index:
                    path = by_index[text]  # a later cycle names the row whose image it shares
                elif len(text) <= 64:
                    raise DataError(f"{p}:{line}: image '{text}' is neither base64 nor the index of an earlier row")
                else:
                    try:
                        path = _store(base64.b64decode(text, validate=True), folder)
                    except (binascii.Error, ValueError):
                        raise DataError(f"{p}:{line}: the image cell is not valid base64") from None
            by_index[str(rec.get("index", line))] = path
            out = {k: v for k, v in rec.items() if k != "image"}
            out["image"] = path
            yield f"{p}:{line}", out
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror or exc}") from None


def options_of(fields: dict[str, Any]) -> dict[str, str]:
    """The answer options of a row (A, B, ... that are present and not empty/NaN)."""
    out = {}
    for k in LETTERS:
        v = fields.get(k)
        if v is None or (isinstance(v, float) and v != v) or str(v).strip() in ("", "nan", "None"):
            continue
        out[k] = str(v)
    return out


_LEAD = re.compile(r"^\s*(?:\(|\*\*)?([A-H])(?:\)|\.|:|\*\*|,|\s|$)")
_SAYS = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:\(|\*\*)?([A-H])\b", re.I)


def parse_letter(text: str | None, options: dict[str, str]) -> tuple[str | None, str]:
    """(letter, "ok") from a reply by rule, no LLM grader: a leading letter ("B", "(B)", "B. red"),
    "the answer is B", a lone letter, or the text of exactly one option; else (None, "failed")."""
    if not text:
        return None, "failed"
    m = _LEAD.match(text) or _SAYS.search(text)
    if m and m.group(1) in options:
        return m.group(1), "ok"
    lone = set(re.findall(r"\b([A-H])\b", text)) & set(options)
    if len(lone) == 1 and len(text.split()) <= 3:
        return lone.pop(), "ok"
    low = text.lower()
    named = [k for k, v in options.items() if re.search(r"\b" + re.escape(v.lower()) + r"\b", low)]
    if len(named) == 1:
        return named[0], "ok"
    return None, "failed"

"""Images and runtimes for the vision tests."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw

from promptweave.models.runtime import ModelRuntime
from promptweave.models.scripted import ScriptedModel
from promptweave.models.spec import ModelConfig


def noise(w: int, h: int, seed: int = 0, amp: int = 60) -> Image.Image:
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (16, 16), bytes(rng.randint(128 - amp, 128 + amp) for _ in range(16 * 16 * 3)))
    return small.resize((w, h), Image.Resampling.NEAREST)


def plain(w: int, h: int, grey: int = 180) -> Image.Image:
    img = Image.new("RGB", (w, h), (grey, grey, grey))
    # a faint dither, so that a patch is not blank (blank patches cost no call)
    px = img.load()
    for i in range(0, w, 7):
        for j in range(0, h, 5):
            px[i, j] = (grey + 2, grey + 2, grey + 2)
    return img


def with_square(img: Image.Image, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).rectangle(box, fill=rgb)
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def huge_png_header(w: int = 40_000, h: int = 40_000) -> bytes:
    """A few dozen bytes whose PNG header claims ``w`` x ``h`` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def scripted_runtime(rules: list[dict[str, str]], default: str = "nothing", concurrency: int = 8) -> ModelRuntime:
    cfg = ModelConfig(backend="scripted", model="vision-test", options={"images": True}, cache=False,
                      max_concurrency=concurrency)
    return ModelRuntime(cfg, ScriptedModel(rules=rules, default=default))


def run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)

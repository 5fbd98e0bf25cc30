"""Hostile images: each a clear one-line error naming the image, never a crash or a network call."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

import base64
import io
import socket

from PIL import Image

from promptweave.models.base import Message
from promptweave.models.cache import cache_key
from promptweave.models.base import GenParams
from promptweave.vision.images import ImageError, image_part, load_image

from .helpers import huge_png_header, noise, png_bytes


def test_a_40000_square_png_is_refused_from_its_header(tmp_path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(huge_png_header())
    assert p.stat().st_size < 200
    with pytest.raises(ImageError, match=r"bomb\.png.*40000x40000 = 1,600,000,000 pixels, over the cap"):
        load_image(str(p), f"image {p.name}", base_dir=tmp_path)


def test_pixel_cap_is_configurable() -> None:
    data = png_bytes(noise(100, 100))
    assert load_image(data, "x", max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match="100x100 = 10,000 pixels, over the cap of 9,999"):
        load_image(data, "x", max_pixels=9_999)


def test_truncated_jpeg(tmp_path) -> None:
    buf = io.BytesIO()
    noise(600, 400).save(buf, format="JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(str(p), "cut.jpg")


def test_text_file_named_png(tmp_path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("these are not pixels\n", encoding="utf-8")
    with pytest.raises(ImageError, match=r"notes\.png: not an image Pillow can read"):
        load_image(str(p), "notes.png")


@pytest.mark.parametrize("url", ["http://example.com/a.png", "https://203.0.113.9/x.jpg", "ftp://h/x.png"])
def test_urls_are_refused_without_any_network_call(url: str, monkeypatch) -> None:
    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(ImageError, match="image URLs are not fetched"):
        load_image(url, "row 3")


def test_missing_file_and_round_trip(tmp_path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        load_image("missing/nowhere.png", "img")
    img = noise(64, 48)
    part = image_part(img)
    back = load_image(part["image_url"]["url"], "part")
    assert back.size == (64, 48) and back.image.tobytes() == img.tobytes()
    assert load_image(base64.b64encode(png_bytes(img)).decode(), "b64").size == (64, 48)


def test_cache_key_holds_the_image_hash_not_its_bytes() -> None:
    a, b = image_part(noise(64, 64, seed=1)), image_part(noise(64, 64, seed=2))
    text = {"type": "text", "text": "Please describe this image."}
    ka = cache_key({"m": 1}, GenParams(), [Message("user", [a, text])])
    ka2 = cache_key({"m": 1}, GenParams(), [Message("user", [dict(a), text])])
    kb = cache_key({"m": 1}, GenParams(), [Message("user", [b, text])])
    assert ka == ka2 and ka != kb
    from promptweave.models.cache import _keyable

    keyed = _keyable(Message("user", [a, text]))
    assert "data:" not in str(keyed) and len(keyed["content"][0]["image_url"]["sha256"]) == 64
    # text-only messages key exactly as before (existing caches stay valid)
    plain = Message("user", "hi")
    assert _keyable(plain) == plain.to_dict()


def test_rgba_and_palette_images_become_rgb() -> None:
    img = Image.new("P", (10, 10))
    assert load_image(png_bytes(img), "p").image.mode == "RGB"


def test_rate_limit_estimate_counts_an_image_not_its_base64() -> None:
    part = image_part(noise(512, 512))
    assert len(part["image_url"]["url"]) > 4_000
    msg = Message("user", [part, {"type": "text", "text": "x" * 400}])
    assert msg.approx_tokens() == 1000 + 100
    assert Message("user", "y" * 40).approx_tokens() == 10


@pytest.mark.parametrize("w, h, side", [(7680, 4320, 1024), (7681, 4319, 1024), (6000, 3001, 1024),
                                        (3840, 2160, 1024), (2001, 1999, 300), (300, 200, 1024)])
def test_pyramid_fit_is_fit_pixel_for_pixel(w: int, h: int, side: int) -> None:
    import numpy as np

    from promptweave.vision.images import Pyramid, fit

    rng = np.random.default_rng(w + h)
    img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    want, got = fit(img, side), Pyramid(img).fit(side)
    assert got.size == want.size and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("w, h", [(7680, 4320), (2001, 2001), (4001, 3001), (3000, 1334), (2003, 1999)])
def test_halving_on_two_threads_is_reduce_pixel_for_pixel(w: int, h: int) -> None:
    import numpy as np

    from promptweave.vision.images import _SPLIT_PIXELS, _halve

    rng = np.random.default_rng(w * h)
    img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    assert w * h >= _SPLIT_PIXELS  # the two-thread path
    got, want = _halve(img), img.reduce(2)
    assert got.size == want.size and got.tobytes() == want.tobytes()

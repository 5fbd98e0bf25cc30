"""Loading images safely, and turning them into OpenAI ``image_url`` content parts.

Every image a pipeline sees goes through :func:`load_image`: a deliberate pixel cap (checked
from the header, before any pixel is decoded), truncated or non-image bytes and image URLs
all become a one-line :class:`ImageError` naming the image, so that a row fails clearly and the
run goes on. Nothing here opens a network connection: an ``http(s)://`` image is refused, never
fetched (download it first; a pipeline must not reach off the machine behind a user's back).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, PromptweaveError

DEFAULT_MAX_PIXELS = 200_000_000  # ~14k x 14k: every HR-Bench 8K image passes, a 40k x 40k bomb does not


_OPEN_LOCK = threading.Lock()
_REDUCING_GAP = 3.0


class ImageError(PromptweaveError):
    """An image cannot be used: missing, not an image, truncated, too large, or a URL."""


def pil() -> Any:
    """The Pillow ``Image`` module, or an install hint."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependency("Pillow", "vision", exc) from None
    return Image


@dataclass
class LoadedImage:
    """A decoded RGB image and where it came from. ``sha256`` is over the source bytes."""

    image: Any  # PIL.Image.Image
    name: str
    sha256: str
    _pyramid: Pyramid | None = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size  # type: ignore[no-any-return]

    def pyramid(self) -> Pyramid:
        """The image's :class:`Pyramid`, built once (a third more pixels, kept with the image):
        the tree's patches and the answers' crops are cut from it."""
        with self._lock:
            if self._pyramid is None:
                self._pyramid = Pyramid(self.image)
            return self._pyramid


def _source_bytes(source: str | bytes | Path, name: str, base_dir: Path | None) -> bytes:
    if isinstance(source, bytes):
        return source
    text = str(source).strip()
    low = text[:16].lower()
    if low.startswith(("http://", "https://", "ftp://")):
        raise ImageError(f"{name}: image URLs are not fetched (refusing {text[:80]!r}); download the image and "
                         "give its path")
    if low.startswith("data:"):
        text = text.partition(",")[2]
        return _b64(text, name)
    if low.startswith("file://"):
        text = text[7:]
    # base64 never holds a "." and is long; a path is short or has one
    if "." in text or len(text) < 64:
        p = Path(text).expanduser()
        if not p.is_absolute() and base_dir is not None and not _exists(p):
            p = base_dir / p
        if not _exists(p):
            raise ImageError(f"{name}: image file {p} does not exist; check the path")
        if p.is_dir():
            raise ImageError(f"{name}: {p} is a directory, not an image file")
        try:
            return p.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read {p}: {exc.strerror}") from None
    return _b64(text, name)


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:  # e.g. a name too long for the file system
        return False


def _b64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name}: neither an existing image path nor valid base64 image data") from None


def load_image(source: str | bytes | Path, name: str = "image", *, max_pixels: int = DEFAULT_MAX_PIXELS,
               base_dir: Path | None = None) -> LoadedImage:
    """Decode ``source`` (a path, ``file://``/``data:`` URL, bare base64 or raw bytes) to RGB.

    Raises :class:`ImageError` for anything that is not a whole image within ``max_pixels``.
    """
    Image = pil()
    data = _source_bytes(source, name, base_dir)
    digest = hashlib.sha256(data).hexdigest()
    try:
        # Pillow's global bomb check is off for this open only (it reads the header, no pixels):
        # our own cap, a parameter, decides below, with the image's name and size in the error
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read ({len(data)} bytes"
                         f"{', starts ' + repr(data[:12]) if data else ''})") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image is larger than Pillow's own bomb limit; refusing it") from None
    except OSError as exc:
        raise ImageError(f"{name}: the image file is truncated or corrupt ({exc}); re-download or re-export it") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{name}: image is {w}x{h} = {w * h:,} pixels, over the cap of {max_pixels:,} "
                         "(a decompression bomb or a huge image); raise max_pixels if you trust it")
    if w < 1 or h < 1:
        raise ImageError(f"{name}: image has no pixels ({w}x{h})")
    try:
        img.load()
        rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        what = "truncated" if "truncated" in str(exc) or "broken" in str(exc) else "corrupt"
        raise ImageError(f"{name}: the image file is {what} ({exc}); re-download or re-export it") from None
    return LoadedImage(rgb, name, digest)


def fit(img: Any, side: int) -> Any:
    """``img`` shrunk (never enlarged) so that its longer side is at most ``side`` px."""
    w, h = img.size
    scale = side / max(w, h)
    if scale >= 1:
        return img
    # reducing_gap: box-reduce by an integer factor first, then resample (~10x faster on 8K images)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), pil().Resampling.BICUBIC,
                      reducing_gap=_REDUCING_GAP)


def encode_png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def image_part(img: Any, side: int | None = None) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part holding ``img`` (shrunk to ``side``) as base64 PNG."""
    if side is not None:
        img = fit(img, side)
    b64 = base64.b64encode(encode_png(img)).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def decode_part(part: dict[str, Any], max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """The image of an ``image_url`` content part (for servers and tests)."""
    url = part.get("image_url", {}).get("url", "")
    return load_image(url, "image_url", max_pixels=max_pixels).image


_SPLIT_PIXELS = 4_000_000  # above this, an image is halved on two threads


def _halve(img: Any) -> Any:
    """``img.reduce(2)``, pixel for pixel; a big image's top and bottom are reduced on two
    threads (Pillow lets go of the GIL while it reduces), since the first halving of an 8K image
    is most of a pyramid and nothing else can start before it."""
    w, h = img.size
    if w * h < _SPLIT_PIXELS or h < 4:
        return img.reduce(2)
    mid = h // 4 * 2  # even: every 2x2 block lies wholly in one half
    out = pil().new(img.mode, ((w + 1) // 2, (h + 1) // 2))
    parts: list[Any] = []
    bottom = threading.Thread(target=lambda: parts.append(img.reduce(2, box=(0, mid, w, h))))
    bottom.start()
    top = img.reduce(2, box=(0, 0, w, mid))
    bottom.join()
    if not parts:  # the thread failed: do its half here
        parts.append(img.reduce(2, box=(0, mid, w, h)))
    out.paste(top, (0, 0))
    out.paste(parts[0], (0, mid // 2))
    return out


class Pyramid:
    """An image and its halvings, so that a patch wanted at ``side`` px is cut from the coarsest
    level that still has that many pixels (cutting and shrinking an 8K image's big patches
    from full resolution again and again cost seconds per image)."""

    def __init__(self, image: Any, min_side: int = 64) -> None:
        self.levels = [(1, image)]
        while min(self.levels[-1][1].size) // 2 >= min_side:
            f, img = self.levels[-1]
            self.levels.append((f * 2, _halve(img)))

    @property
    def image(self) -> Any:
        return self.levels[0][1]

    def fit(self, side: int) -> Any:
        """``fit(self.image, side)``, pixel for pixel, without shrinking the full image again:
        Pillow's resize first box-reduces by ``int(scale / reducing_gap)``, and when that factor
        is 2 (an 8K image to 1024 px) its result is this pyramid's first level."""
        w, h = self.image.size
        scale = side / max(w, h)
        if scale >= 1 or len(self.levels) < 2:
            return fit(self.image, side)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if int(w / size[0] / _REDUCING_GAP) == int(h / size[1] / _REDUCING_GAP) == 2:
            return self.levels[1][1].resize(size, pil().Resampling.BICUBIC, box=(0, 0, w / 2, h / 2))
        return fit(self.image, side)

    def crop(self, box: tuple[int, int, int, int], side: int | None = None) -> Any:
        """The patch ``box`` (original pixels), its longer side at most ``side`` px."""
        longest = max(box[2] - box[0], box[3] - box[1])
        f, img = self.levels[0]
        if side is not None:
            for lf, limg in self.levels:
                if longest // lf >= side:
                    f, img = lf, limg
        patch = img.crop((box[0] // f, box[1] // f, max(box[0] // f + 1, box[2] // f), max(box[1] // f + 1, box[3] // f)))
        return fit(patch, side) if side is not None else patch

"""Patch embedders for the merge step of DC²: which sibling patches look alike.

``pixel-stats`` (the default, no model needed) describes a patch by plain pixel statistics: a
4x4 colour thumbnail, per-channel spread, and per-channel extremes (how far the most unusual
pixel lies from the patch's median), so that a small object on a plain background keeps its
patch apart from a truly empty sibling. ``clip`` embeds with a CLIP image tower from a local
checkpoint through open_clip or transformers, imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, MissingDependency
from ..registry import Registry
from .images import pil


class Embedder(Protocol):
    """Maps patches to vectors; :meth:`distance` is 0 for identical patches."""

    name: str
    default_threshold: float
    side: int  # patches reach embed() at most this many px on their longer side

    def embed(self, patches: list[Any]) -> np.ndarray: ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> float: ...


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0 if na == nb else 1.0
    return 1.0 - float(np.dot(a, b)) / (na * nb)


_LEVELS = np.arange(256, dtype=np.float32) / 255.0  # a uint8 level on the 0..1 scale, as float32


def _channel_stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel spread (standard deviation) and extreme (largest distance of a pixel from the
    channel's median) of a uint8 RGB array, on the 0..1 scale, as float32.

    The numbers are bit for bit those of ``flat.std(axis=0)``, ``np.median(flat, axis=0)`` and
    ``np.abs(flat - median).max(axis=0)`` on ``flat``, the pixels as float32 rows (merges sit
    close to their threshold on smooth backgrounds, so a last-digit change can change the tree),
    at a fraction of the cost: numpy reduces over a 3-wide axis slowly (~1 ms a patch, ~500
    patches per 8K tree). The spread keeps numpy's float32 sums in pixel order (a running sum
    per channel); the median and the extremes come from a histogram (the farthest pixel from
    the median is the darkest or the brightest one, and float32 subtraction keeps that order).
    """
    channels = np.ascontiguousarray(rgb.reshape(-1, 3).T)  # (3, n) uint8: one channel a row
    n = channels.shape[1]
    cols = channels.astype(np.float32) / 255.0
    mean = np.cumsum(cols, axis=1)[:, -1:] / np.float32(n)
    dev = cols - mean
    dev *= dev
    spread = np.sqrt(np.cumsum(dev, axis=1)[:, -1] / np.float32(n))
    counts = np.stack([np.bincount(ch, minlength=256) for ch in channels])
    cum = np.cumsum(counts, axis=1)
    # the sorted channel's middle element(s): the first level whose running count passes the rank
    lo, hi = (cum <= (n - 1) // 2).sum(axis=1), (cum <= n // 2).sum(axis=1)
    # numpy's median of float32 values: the middle one, or the float32 mean of the middle two
    med = (_LEVELS[lo] + _LEVELS[hi]) / np.float32(2)
    seen = counts > 0
    darkest, brightest = seen.argmax(axis=1), 255 - seen[:, ::-1].argmax(axis=1)
    extreme = np.maximum(np.abs(_LEVELS[darkest] - med), np.abs(_LEVELS[brightest] - med))
    return spread.astype(np.float32), extreme.astype(np.float32)


class PixelStatsEmbedder:
    """Pixel statistics (not a learned embedding); distance is the largest feature difference,
    in units of the 0..1 intensity scale."""

    name = "pixel-stats"
    default_threshold = 0.06

    def __init__(self, side: int = 160) -> None:
        self.side = side

    def embed(self, patches: list[Any]) -> np.ndarray:
        rows = []
        Image = pil()
        for small in patches:
            if max(small.size) > self.side:
                small = small.copy()
                small.thumbnail((self.side, self.side), Image.Resampling.BOX)
            thumb = np.asarray(small.resize((4, 4), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0
            rows.append(np.concatenate([thumb, *_channel_stats(np.asarray(small))]))
        return np.stack(rows)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max())


class ClipEmbedder:
    """CLIP image features from a local checkpoint: an open_clip ``.pt``/``.bin`` file with
    ``clip_arch``, or a transformers CLIP directory. Cosine distance, as the reference code."""

    name = "clip"
    default_threshold = 0.1
    side = 448  # the processor resizes to its own input (224/336) from here

    def __init__(self, checkpoint: str, arch: str = "ViT-B-32") -> None:
        if not checkpoint:
            raise ConfigError("embedder clip needs clip_checkpoint: a local CLIP checkpoint path")
        self.path = Path(checkpoint).expanduser()
        if not self.path.exists():
            raise ConfigError(f"clip_checkpoint {self.path} does not exist")
        self.arch = arch
        self._fn: Any = None

    def _load(self) -> Any:
        if self._fn is not None:
            return self._fn
        if self.path.is_dir():
            try:
                import torch
                from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
            except ImportError as exc:
                raise MissingDependency("transformers", "clip", exc) from None
            proc = CLIPImageProcessor.from_pretrained(str(self.path))
            model = CLIPVisionModelWithProjection.from_pretrained(str(self.path)).eval()

            def run(patches: list[Any]) -> np.ndarray:
                with torch.no_grad():
                    out = model(**proc(images=patches, return_tensors="pt")).image_embeds
                return out.numpy()
        else:
            try:
                import open_clip
                import torch
            except ImportError as exc:
                raise MissingDependency("open_clip_torch", "clip", exc) from None
            model, _, preprocess = open_clip.create_model_and_transforms(self.arch, pretrained=str(self.path))
            model.eval()

            def run(patches: list[Any]) -> np.ndarray:
                with torch.no_grad():
                    batch = torch.stack([preprocess(p) for p in patches])
                    return model.encode_image(batch).numpy()
        self._fn = run
        return run

    def embed(self, patches: list[Any]) -> np.ndarray:
        return np.asarray(self._load()(patches), dtype=np.float32)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return cosine_distance(a, b)


#: name -> factory(checkpoint, arch) -> Embedder; third parties add ``promptweave.embedders`` entry points.
embedders: Registry[Any] = Registry("embedder", "promptweave.embedders")
embedders.register("pixel-stats", lambda checkpoint=None, arch=None: PixelStatsEmbedder())
embedders.register("clip", lambda checkpoint=None, arch=None: ClipEmbedder(checkpoint or "", arch or "ViT-B-32"))


def create_embedder(name: str, checkpoint: str | None = None, arch: str | None = None) -> Embedder:
    return embedders.get(name)(checkpoint=checkpoint, arch=arch)  # type: ignore[no-any-return]

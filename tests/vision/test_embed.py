"""The pixel-statistics embedder's fast statistics are numpy's float path, bit for bit."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

import numpy as np

from promptweave.vision.embed import PixelStatsEmbedder, _channel_stats

from .helpers import noise


def _float_path(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The statistics as the embedder first computed them: on float32 pixel rows."""
    flat = (rgb.astype(np.float32) / 255.0).reshape(-1, 3)
    med = np.median(flat, axis=0)
    return flat.std(axis=0), np.abs(flat - med).max(axis=0)


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(1, 1), (1, 2), (3, 5), (90, 160), (91, 159)]]
    out.append(np.clip(rng.normal(180, 4, size=(90, 160, 3)), 0, 255).astype(np.uint8))  # smooth, like a background
    flat = np.full((40, 60, 3), 200, dtype=np.uint8)
    flat[7, 11] = (0, 255, 30)  # one odd pixel: the extreme must find it
    out += [flat, np.zeros((8, 8, 3), dtype=np.uint8)]
    return out


@pytest.mark.parametrize("rgb", _cases(), ids=lambda a: "x".join(map(str, a.shape[:2])))
def test_channel_stats_equal_the_float_path_bit_for_bit(rgb: np.ndarray) -> None:
    # merges sit near their threshold on smooth backgrounds: a last-digit change changed two of
    # twelve planned trees when the spread was summed in float64
    spread, extreme = _channel_stats(rgb)
    want_spread, want_extreme = _float_path(rgb)
    assert spread.dtype == extreme.dtype == np.float32
    assert np.array_equal(spread, want_spread)
    assert np.array_equal(extreme, want_extreme)


def test_embedding_of_a_patch_holds_thumbnail_spread_and_extremes() -> None:
    patch = noise(150, 100, seed=3)
    vec = PixelStatsEmbedder().embed([patch])[0]
    spread, extreme = _float_path(np.asarray(patch))
    assert vec.shape == (4 * 4 * 3 + 3 + 3,)
    assert np.array_equal(vec[48:51], spread) and np.array_equal(vec[51:], extreme)

"""High-resolution image perception for any OpenAI-compatible vision model: DC² (Divide,
Conquer and Combine; Wang et al., AAAI 2025).

- :mod:`.images`: safe image loading (pixel cap, truncated/non-image files, no URL fetching),
  ``image_url`` content parts, an image pyramid.
- :mod:`.tree`: the quadtree (minimum side, depth, overlap) with alike siblings merged.
- :mod:`.embed`: patch embedders (``pixel-stats`` default, ``clip`` from a local checkpoint).
- :mod:`.dc2`: conquer and combine into a visual memory (objects with boxes), the filter,
  the call budget, the memory store.
- :mod:`.schedule`: which waiting call or patch goes first (the critical path).
- :mod:`.answer`: retrieval, the "more information ... NONE" crops, the final call.
- :mod:`.synthetic`: an HR-Bench-format synthetic set; :mod:`.report`: HR-Bench accuracy.

Pillow is imported only when an image is touched (``pip install 'promptweave[vision]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DC2Params", "VisualMemory", "answer", "build_memory", "load_image"]


def __getattr__(name: str) -> Any:  # lazy: importing the package costs nothing
    if name in ("DC2Params", "VisualMemory", "build_memory"):
        from . import dc2

        return getattr(dc2, name)
    if name == "answer":
        from .answer import answer

        return answer
    if name == "load_image":
        from .images import load_image

        return load_image
    raise AttributeError(name)

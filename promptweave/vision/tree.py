"""Divide: the quadtree over an image, with alike siblings merged (DC² stage 1).

The tree is planned from pixels alone, before any model call, so its size (and so the calls it
will cost) is known up front: it grows breadth-first and stops growing when the next split would
exceed ``max_nodes``. Merged siblings keep one representative patch (a real patch, the member
nearest the group's mean embedding), never an average of pixels, and the group keeps every
member's box so that what the representative shows is placed in all of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .embed import Embedder

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in original-image pixels, x1/y1 exclusive


@dataclass
class Node:
    """One patch of the tree. ``box`` is the representative patch; ``members`` every box the
    node stands for (one, or several merged alike siblings)."""

    id: str
    box: Box
    depth: int
    members: list[Box]
    children: list[Node] = field(default_factory=list)

    @property
    def leaf(self) -> bool:
        return not self.children

    def walk(self) -> list[Node]:
        out, todo = [], [self]
        while todo:
            n = todo.pop()
            out.append(n)
            todo.extend(n.children)
        return out


@dataclass
class TreeSpec:
    """How to divide: stop below ``min_side`` px (a child's shorter side) or at ``max_depth``;
    ``overlap`` widens each child across the inner seams by that fraction of its side."""

    min_side: int = 168
    max_depth: int = 5
    overlap: float = 0.0
    merge_threshold: float | None = None
    max_nodes: int | None = None


@dataclass
class Tree:
    root: Node
    size: tuple[int, int]
    budget_hit: bool = False
    merged_groups: int = 0

    def nodes(self) -> list[Node]:
        return self.root.walk()


def child_boxes(box: Box, overlap: float) -> list[Box]:
    """Top-left, top-right, bottom-left, bottom-right quarters of ``box``, each widened by
    ``overlap`` x its side across the seams it shares with its siblings."""
    x0, y0, x1, y1 = box
    xm, ym = x0 + (x1 - x0) // 2, y0 + (y1 - y0) // 2
    ox, oy = round((xm - x0) * overlap), round((ym - y0) * overlap)
    return [
        (x0, y0, min(x1, xm + ox), min(y1, ym + oy)),
        (max(x0, xm - ox), y0, x1, min(y1, ym + oy)),
        (x0, max(y0, ym - oy), min(x1, xm + ox), y1),
        (max(x0, xm - ox), max(y0, ym - oy), x1, y1),
    ]


def can_split(box: Box, depth: int, spec: TreeSpec) -> bool:
    w, h = box[2] - box[0], box[3] - box[1]
    return depth < spec.max_depth and min(w // 2, h // 2) >= spec.min_side


def group_alike(vectors: np.ndarray, embedder: Embedder, threshold: float) -> list[list[int]]:
    """Indices grouped by average linkage: clusters join while their mean pairwise distance is
    at most ``threshold`` (the reference's ``fcluster(linkage(average), t, 'distance')``)."""
    n = len(vectors)
    d = np.array([[embedder.distance(vectors[i], vectors[j]) for j in range(n)] for i in range(n)])
    groups = [[i] for i in range(n)]
    while len(groups) > 1:
        best, pair = None, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                mean = float(np.mean([d[i, j] for i in groups[a] for j in groups[b]]))
                if best is None or mean < best:
                    best, pair = mean, (a, b)
        if best is None or best > threshold or pair is None:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups)


def representative(members: list[int], vectors: np.ndarray) -> int:
    """The member nearest the group's mean vector (a patch that exists, unlike a pixel mean)."""
    mean = vectors[members].mean(axis=0)
    return min(members, key=lambda i: float(np.linalg.norm(vectors[i] - mean)))


def divide(image: Any, spec: TreeSpec, embedder: Embedder, crop: Any = None,
           settled: Any = None, root: Node | None = None) -> Tree:
    """Plan the quadtree of ``image`` (a PIL image) breadth-first under ``spec``; ``crop(box,
    side)`` cuts a patch for the embedder (default: from ``image`` itself). ``settled(node)`` is
    called as soon as a node's children are decided for good (none: a leaf), so that its model
    calls can start while the rest of the tree is still being planned."""
    w, h = image.size
    if crop is None:
        from .images import fit

        crop = lambda box, side: fit(image.crop(box), side)  # noqa: E731
    root = root or Node("0", (0, 0, w, h), 0, [(0, 0, w, h)])
    tree = Tree(root, (w, h))
    threshold = embedder.default_threshold if spec.merge_threshold is None else spec.merge_threshold
    count = 1
    queue: deque[Node] = deque([root])
    while queue:
        node = queue.popleft()
        _expand(node, image, spec, embedder, crop, threshold, tree, queue, count)
        count += len(node.children)
        if settled is not None:
            settled(node)
    return tree


def _expand(node: Node, image: Any, spec: TreeSpec, embedder: Embedder, crop: Any, threshold: float,
            tree: Tree, queue: deque[Node], count: int) -> None:
    """Give ``node`` its children (alike ones merged), unless it is too small, too deep, or
    they would take the tree over ``max_nodes``."""
    if not can_split(node.box, node.depth, spec):
        return
    if spec.max_nodes is not None and count + 1 > spec.max_nodes:
        # not even one merged group would fit: refused whatever the patches look like, so they
        # are not embedded (on an 8K image a third of the planner's embeddings were of such nodes)
        tree.budget_hit = True
        return
    boxes = child_boxes(node.box, spec.overlap)
    vectors = embedder.embed([crop(b, embedder.side) for b in boxes])
    groups = group_alike(vectors, embedder, threshold) if threshold > 0 else [[i] for i in range(4)]
    if spec.max_nodes is not None and count + len(groups) > spec.max_nodes:
        tree.budget_hit = True
        return
    for k, members in enumerate(groups):
        rep = boxes[representative(members, vectors)]
        # a merged group spans several boxes; only its representative is looked at, in all of them
        child = Node(f"{node.id}.{k}", rep, node.depth + 1, [boxes[i] for i in members])
        tree.merged_groups += len(members) > 1
        node.children.append(child)
        queue.append(child)


def translate(box: Box, frm: Box, to: Box) -> Box:
    """``box`` (inside patch ``frm``) moved to the same place inside the same-sized patch ``to``."""
    dx, dy = to[0] - frm[0], to[1] - frm[1]
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def position_words(box: Box, size: tuple[int, int]) -> str:
    """Where ``box`` lies in an image of ``size``, as words (top left ... bottom right, center)."""
    cx, cy = (box[0] + box[2]) / 2 / size[0], (box[1] + box[3]) / 2 / size[1]
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    return f"{row} {col}".strip() or "center"

"""Divide and merge: depth, minimum side, overlap, alike siblings, budget, coordinates."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

import numpy as np

from promptweave.vision.embed import PixelStatsEmbedder
from promptweave.vision.tree import TreeSpec, child_boxes, divide, position_words, translate

from .helpers import noise, plain, with_square

EMB = PixelStatsEmbedder()


@pytest.mark.parametrize("size, min_side, max_depth, depth", [
    ((1344, 1344), 168, 5, 3),   # 1344 -> 672 -> 336 -> 168: a 168 child would split into 84 < 168
    ((1344, 1344), 168, 2, 2),   # max_depth wins
    ((1344, 1344), 400, 5, 1),   # 672 -> children of 336 < 400
    ((300, 300), 168, 5, 0),     # too small to split at all
    ((4000, 400), 168, 5, 1),    # the shorter side decides
])
def test_depth_and_min_side(size: tuple[int, int], min_side: int, max_depth: int, depth: int) -> None:
    tree = divide(noise(*size), TreeSpec(min_side=min_side, max_depth=max_depth, merge_threshold=0), EMB)
    nodes = tree.nodes()
    assert max(n.depth for n in nodes) == depth
    for n in nodes:
        if not n.leaf:
            assert len(n.children) == 4  # merging off
            w, h = n.box[2] - n.box[0], n.box[3] - n.box[1]
            assert min(w // 2, h // 2) >= min_side


def test_quarters_tile_the_parent_without_overlap() -> None:
    kids = child_boxes((0, 0, 1000, 600), 0.0)
    assert kids == [(0, 0, 500, 300), (500, 0, 1000, 300), (0, 300, 500, 600), (500, 300, 1000, 600)]


def test_overlap_widens_children_across_seams_only() -> None:
    kids = child_boxes((100, 100, 1100, 700), 0.2)
    assert kids[0] == (100, 100, 700, 460)    # 500 wide + 100 across the vertical seam; 300 + 60 down
    assert kids[3] == (500, 340, 1100, 700)   # outer edges stay on the parent's
    for k in kids:
        assert 100 <= k[0] < k[2] <= 1100 and 100 <= k[1] < k[3] <= 700


def test_object_on_a_seam_is_whole_in_one_child_with_overlap() -> None:
    obj = (480, 100, 530, 150)  # across the seam at x=500
    inside = lambda b: b[0] <= obj[0] and b[1] <= obj[1] and b[2] >= obj[2] and b[3] >= obj[3]  # noqa: E731
    assert not any(inside(b) for b in child_boxes((0, 0, 1000, 600), 0.0))
    assert any(inside(b) for b in child_boxes((0, 0, 1000, 600), 0.1))


def test_alike_siblings_merge_and_unlike_do_not() -> None:
    img = with_square(plain(800, 800), (550, 100, 600, 150), (220, 30, 30))  # a red square in the top-right quarter
    tree = divide(img, TreeSpec(min_side=200, max_depth=1), EMB)
    kids = tree.root.children
    assert len(kids) == 2 and tree.merged_groups == 1
    single = [k for k in kids if len(k.members) == 1]
    group = [k for k in kids if len(k.members) == 3]
    assert single[0].box == (400, 0, 800, 400)          # the red square's quarter stays on its own
    assert group[0].box in group[0].members             # the representative is a real member patch
    assert sorted(group[0].members) == [(0, 0, 400, 400), (0, 400, 400, 800), (400, 400, 800, 800)]


def test_merge_threshold_zero_never_merges() -> None:
    tree = divide(plain(800, 800), TreeSpec(min_side=200, max_depth=1, merge_threshold=0), EMB)
    assert len(tree.root.children) == 4 and tree.merged_groups == 0


def test_budget_stops_growth_and_is_recorded() -> None:
    full = divide(noise(2048, 2048), TreeSpec(min_side=128, max_depth=4, merge_threshold=0), EMB)
    capped = divide(noise(2048, 2048), TreeSpec(min_side=128, max_depth=4, merge_threshold=0, max_nodes=30), EMB)
    assert not full.budget_hit and len(full.nodes()) == 1 + 4 + 16 + 64 + 256
    assert capped.budget_hit and len(capped.nodes()) <= 30
    depths = [n.depth for n in capped.nodes()]
    # breadth-first: the whole of level 2 (21 nodes so far) before level 3, where two splits of 4 fit in 30
    assert depths.count(2) == 16 and depths.count(3) == 8 and len(depths) == 29


def test_translate_and_position() -> None:
    assert translate((10, 20, 30, 40), (0, 0, 100, 100), (200, 300, 300, 400)) == (210, 320, 230, 340)
    assert position_words((0, 0, 10, 10), (300, 300)) == "top left"
    assert position_words((290, 290, 300, 300), (300, 300)) == "bottom right"
    assert position_words((140, 140, 160, 160), (300, 300)) == "center"


def test_pixel_stats_embedder_is_deterministic() -> None:
    a = EMB.embed([noise(200, 200, seed=1)])
    b = EMB.embed([noise(200, 200, seed=1)])
    assert np.array_equal(a, b) and EMB.distance(a[0], b[0]) == 0.0


def test_nodes_refused_for_the_budget_are_not_embedded() -> None:
    class Counting(PixelStatsEmbedder):
        patches = 0

        def embed(self, patches):  # type: ignore[no-untyped-def]
            Counting.patches += len(patches)
            return super().embed(patches)

    tree = divide(noise(2048, 2048), TreeSpec(min_side=128, max_depth=4, merge_threshold=0, max_nodes=5), Counting())
    # the root's four children fill the budget: none of them can take even one child, so only the
    # root's split was embedded, and the tree is the breadth-first one the budget allows
    assert tree.budget_hit and len(tree.nodes()) == 5
    assert Counting.patches == 4

"""Conquer and combine (DC² stages 2-3): the visual memory of an image, built bottom-up.

Every node's description is issued as soon as its children's descriptions are in (its object
extraction then runs beside its parent's description), so all leaves go out at once and the
runtime's concurrency limit is the only brake; waiting calls take the free slots critical path
first (:mod:`.schedule`), and patches are cut and encoded once, deepest first, in worker
threads. Each node gets a description (a leaf:
the caption prompt; a parent: its patch plus its children's descriptions) and an object list
extracted from that description. The filter keeps an object at a parent only if the parent's
list and at least one child's list name it; a kept object carries the boxes (original-image
pixels) of the finest patches that named it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models.base import Message
from ..models.runtime import CallResult, ModelRuntime
from . import prompts
from .embed import create_embedder
from .images import LoadedImage, Pyramid, image_part, text_part
from .schedule import LATER, PriorityGate, PriorityPool, describe_rank, extract_rank
from .tree import Box, Node, Tree, TreeSpec, divide, translate


class DC2Params(BaseModel):
    """Every knob of DC²; all of them enter the visual memory's cache key."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    min_side: int = Field(168, ge=16, description="a patch is not split when a child's shorter side would be below this")
    max_depth: int = Field(5, ge=0, description="levels below the whole image")
    overlap: float = Field(0.0, ge=0, le=0.5, description="children overlap across seams by this fraction of their side")
    embedder: str = Field("pixel-stats", description="pixel-stats (default, no model) | clip | a registered embedder")
    clip_checkpoint: str | None = Field(None, description="local CLIP checkpoint (open_clip file or transformers dir)")
    clip_arch: str = "ViT-B-32"
    merge_threshold: float | None = Field(None, ge=0, description="siblings closer than this merge; 0 disables; "
                                                                  "default: the embedder's")
    budget: int = Field(400, ge=4, description="model calls per image, answer calls included")
    send_side: int = Field(1024, ge=64, description="longer side of each patch and crop sent to the model")
    image_side: int = Field(1024, ge=64, description="longer side of the whole (downsampled) image sent")
    top_k: int = Field(2, ge=0, description="objects retrieved per question")
    retriever: Literal["lexical", "embedding"] = Field("lexical", description="how objects are matched to the "
                                                       "question: shared words, or a sentence-transformers model")
    retriever_model: str | None = Field(None, description="local sentence-transformers model (retriever: embedding)")
    retrieval_threshold: float = Field(0.3, ge=-1, le=1, description="minimum cosine similarity (the paper's alpha)")
    max_crops: int = Field(4, ge=0, description="crops asked about per question")
    combine: Literal["text", "crops", "both"] = "text"
    locations: bool = Field(True, description="add each retrieved object's place in the image to the gathered text")
    max_tokens: int | None = Field(None, ge=1)


@dataclass
class Usage:
    """Calls and tokens of one piece of work; ``calls`` excludes completion-cache hits."""

    requests: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, r: CallResult) -> None:
        self.requests += 1
        self.calls += 0 if r.cached else 1
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens


@dataclass
class VisualMemory:
    """What DC² knows about one image: objects with their boxes, and how it got there."""

    key: str
    size: tuple[int, int]
    objects: dict[str, list[Box]]
    descriptions: dict[str, str]
    nodes: int
    merged_groups: int
    budget_hit: bool
    usage: Usage
    parse_failures: list[dict[str, str]] = field(default_factory=list)
    dropped: int = 0
    errors: list[str] = field(default_factory=list)
    # image_url parts already encoded for answering (the downsampled image, crops by box), so
    # that no question encodes the same picture twice; not part of the summary
    pictures: dict[Any, dict[str, Any]] = field(default_factory=dict, repr=False)

    def summary(self, max_objects: int = 50) -> dict[str, Any]:
        return {"key": self.key[:16], "size": list(self.size), "nodes": self.nodes,
                "merged_groups": self.merged_groups, "budget_hit": self.budget_hit,
                "objects": {k: [list(b) for b in v] for k, v in list(self.objects.items())[:max_objects]},
                "dropped_by_filter": self.dropped, "parse_failures": self.parse_failures[:10],
                "parse_failure_count": len(self.parse_failures),
                "usage": asdict(self.usage)}


@dataclass
class _Result:
    caption: str
    names: list[str]
    kept: dict[str, list[Box]]


def memory_key(image_sha: str, params: DC2Params, identity: dict[str, Any]) -> str:
    blob = json.dumps({"image": image_sha, "params": params.model_dump(), "model": identity},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class MemoryStore:
    """Visual memories by key (image hash + every parameter + model identity), shared by the
    rows of a run: a second question on an image waits for, then reuses, the first one's."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, asyncio.Future[VisualMemory]] = OrderedDict()

    async def get_or_build(self, key: str, build: Any) -> tuple[VisualMemory, bool]:
        fut = self._items.get(key)
        if fut is not None and not (fut.done() and (fut.exception() or fut.result().errors)):
            self._items.move_to_end(key)
            return await asyncio.shield(fut), True
        fut = asyncio.get_running_loop().create_future()
        self._items[key] = fut
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        try:
            mem = await build()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            self._items.pop(key, None)
            raise
        fut.set_result(mem)
        return mem, False


#: the threads that cut and encode patches, deepest node first, shared by every image being built
#: (their work is Pillow's, which runs without the GIL; idle threads leave)
PIXELS = PriorityPool(workers=min(4, max(2, os.cpu_count() or 2)))


def _blank(patch: Any) -> bool:
    """A patch of one flat colour (e.g. padding) has nothing to describe: no call. (The
    reference skips all-black patches; any flat colour is as empty.)"""
    return all(hi - lo <= 1 for lo, hi in patch.getextrema())


class Builder:
    """Builds one image's visual memory through one model runtime."""

    def __init__(self, runtime: ModelRuntime, params: DC2Params) -> None:
        self.rt, self.p = runtime, params
        self.usage = Usage()
        self.failures: list[dict[str, str]] = []
        self.errors: list[str] = []
        self.dropped = 0
        self.captions: dict[str, str] = {}
        # the runtime's slots, handed out critical path first (see .schedule)
        self.gate = PriorityGate(runtime.concurrency)
        self.pool = PIXELS
        # replies to extraction prompts by description: equal descriptions (blank-looking
        # patches say the same sentence) are extracted once per image, not once per node or
        # as often as they happen to be in flight together
        self.extracted: dict[str, asyncio.Future[str | None]] = {}

    async def _chat(self, content: list[dict[str, Any]] | str, rank: tuple[int, int]) -> str | None:
        overrides = {"max_tokens": self.p.max_tokens} if self.p.max_tokens else {}
        async with self.gate.slot(rank):
            r = await self.rt.chat([Message("user", content)], **overrides)
        self.usage.add(r)
        if not r.ok:
            self.errors.append(r.error or "call failed")
            return None
        return r.text or ""

    async def _objects(self, node: Node, caption: str) -> list[str]:
        if not caption.strip():
            return []
        if caption not in self.extracted:
            prompt = prompts.EXTRACT.format(caption=caption.replace('"', "'"))
            self.extracted[caption] = asyncio.ensure_future(self._chat(prompt, extract_rank(node.depth)))
        raw = await asyncio.shield(self.extracted[caption])
        if raw is None:
            return []
        names, err = prompts.parse_objects(raw)
        if names is None:
            self.failures.append({"node": node.id, "error": err or "", "raw": raw[:500]})
            return []
        return names

    def _picture(self, image: Pyramid, box: Box) -> dict[str, Any] | None:
        patch = image.crop(box, self.p.send_side)
        return None if _blank(patch) else image_part(patch)

    async def visit(self, image: Pyramid, root: Node, settled: Any = None,
                    planned: asyncio.Future[Any] | None = None) -> _Result:
        """Describe and conclude every node under ``root``. A node's description goes out as soon
        as its children's descriptions are in, and its object extraction runs beside its
        parent's description, so the critical path is one description per level plus one
        extraction. ``settled(node)`` (awaitable) says when a node's children are final, while
        the tree is still being planned, and ``planned`` ends with the planning; without them
        the tree is complete."""
        if planned is None:
            planned = asyncio.get_running_loop().create_future()
            planned.set_result(None)
        caps: dict[str, asyncio.Future[str | None]] = {}
        results: dict[str, asyncio.Future[_Result]] = {}

        async def ready(n: Node) -> None:
            if settled is not None:
                await settled(n)

        def cap(n: Node) -> asyncio.Future[str | None]:
            if n.id not in caps:
                caps[n.id] = asyncio.ensure_future(self._describe(image, n, ready, cap, planned))
                # the node's conclusion (its extraction first) starts with its description, so
                # the extraction goes out when the description is in; started from the parent's
                # conclusion instead, the extractions ran level by level after the root's
                # description, six rounds of calls on the critical path of an 8K image
                results[n.id] = asyncio.ensure_future(self._conclude(n, caps[n.id], ready, result))
            return caps[n.id]

        def result(n: Node) -> asyncio.Future[_Result]:
            cap(n)
            return results[n.id]

        try:
            return await result(root)
        finally:
            for task in [*caps.values(), *results.values(), *self.extracted.values()]:
                task.cancel()

    async def _describe(self, image: Pyramid, node: Node, ready: Any, cap: Any, planned: Any) -> str | None:
        """The node's description; None for a blank patch or a failed call."""
        await ready(node)
        rank = describe_rank(node.depth)
        if node.leaf:
            captions: list[str | None] = []
            picture = await self.pool.submit(rank, lambda: self._picture(image, node.box))
        else:
            kids = asyncio.gather(*(cap(c) for c in node.children))
            # an inner node's patch is wanted only when its children are described: it is cut
            # once the planner is done (or they are), not beside it; cut at once, the inner
            # patches took CPU from the planner, whose last nodes are the deepest leaves
            await asyncio.wait([kids, planned], return_when=asyncio.FIRST_COMPLETED)
            picture_job = self.pool.submit(rank, lambda: self._picture(image, node.box))
            captions = await kids
            picture = await picture_job
        if picture is None:
            return None
        if node.leaf:
            caption = await self._chat([picture, text_part(prompts.CAPTION)], rank)
        else:
            joined = "\n".join(c for c in captions if c)
            caption = await self._chat([picture, text_part(prompts.REFINE.format(captions=joined))], rank)
        self.captions[node.id] = caption or ""
        return caption

    async def _conclude(self, node: Node, caption_job: asyncio.Future[str | None], ready: Any,
                        result: Any) -> _Result:
        """The node's objects, filtered against its children's, with their boxes."""
        caption = await caption_job
        names = await self._objects(node, caption) if caption else []
        await ready(node)
        kids = await asyncio.gather(*(result(c) for c in node.children))
        kept = _merge_kept(node, kids)
        if node.leaf and node.depth == 0:  # the image was too small to divide: nothing to confirm against
            kept = {n: [node.box] for n in names}
        for name in names:
            confirming = [(c, k) for c, k in zip(node.children, kids) if name in k.names]
            if not confirming and not node.leaf:
                self.dropped += 1
                continue
            for child, res in confirming:
                boxes = res.kept.get(name) or [child.box]
                kept.setdefault(name, []).extend(_spread(boxes, child))
        return _Result(caption or "", names, {k: _finest(v) for k, v in kept.items()})


def _spread(boxes: list[Box], node: Node) -> list[Box]:
    """``boxes`` (inside the node's representative patch) placed in every member patch."""
    return [translate(b, node.box, m) for m in node.members for b in boxes]


def _merge_kept(node: Node, kids: list[_Result]) -> dict[str, list[Box]]:
    out: dict[str, list[Box]] = {}
    for child, res in zip(node.children, kids):
        for name, boxes in res.kept.items():
            out.setdefault(name, []).extend(_spread(boxes, child))
    return out


def _finest(boxes: list[Box]) -> list[Box]:
    """Distinct boxes, dropping any box that contains another (the finer one places better)."""
    uniq = list(dict.fromkeys(boxes))
    return [b for b in uniq if not any(o != b and b[0] <= o[0] and b[1] <= o[1] and b[2] >= o[2] and b[3] >= o[3]
                                       for o in uniq)]


def plan(image: LoadedImage, params: DC2Params, pyramid: Pyramid | None = None, settled: Any = None,
         root: Node | None = None) -> Tree:
    """The quadtree DC² will describe, within the call budget (2 calls a node, answer calls reserved)."""
    embedder = create_embedder(params.embedder, params.clip_checkpoint, params.clip_arch)
    reserve = 1 + (params.max_crops if params.combine != "crops" else 0)
    spec = TreeSpec(params.min_side, params.max_depth, params.overlap, params.merge_threshold,
                    max_nodes=max(1, (params.budget - reserve) // 2))
    pyramid = pyramid or image.pyramid()
    return divide(image.image, spec, embedder, pyramid.crop, settled, root)


async def build_memory(image: LoadedImage, runtime: ModelRuntime, params: DC2Params) -> VisualMemory:
    """Divide (in a worker thread: pixels only) and, at the same time, conquer and combine
    through ``runtime``: a node's calls start as soon as the planner has settled it."""
    loop = asyncio.get_running_loop()
    pyramid = await asyncio.to_thread(image.pyramid)
    flags: dict[str, asyncio.Future[None]] = {}

    def flag(node_id: str) -> asyncio.Future[None]:  # on the loop's thread only
        if node_id not in flags:
            flags[node_id] = loop.create_future()
        return flags[node_id]

    def settle(node: Node) -> None:  # called on the planner's thread
        loop.call_soon_threadsafe(lambda: flag(node.id).done() or flag(node.id).set_result(None))

    async def settled(node: Node) -> None:
        await flag(node.id)

    w, h = image.size
    root = Node("0", (0, 0, w, h), 0, [(0, 0, w, h)])
    planner = asyncio.ensure_future(asyncio.to_thread(plan, image, params, pyramid, settle, root))
    builder = Builder(runtime, params)
    visitor = asyncio.ensure_future(builder.visit(pyramid, root, settled, planner))

    async def downsampled() -> dict[str, Any]:
        # the image every question's final call sends, encoded once, after the planning (which
        # the deepest leaves wait for) while the calls are out
        await asyncio.wait([planner])
        return await builder.pool.submit(LATER, lambda: image_part(pyramid.fit(params.image_side)))

    whole = asyncio.ensure_future(downsampled())
    try:
        done, _ = await asyncio.wait({planner, visitor}, return_when=asyncio.FIRST_EXCEPTION)
        if planner in done and planner.exception() is not None:
            raise planner.exception()  # type: ignore[misc]
        tree = await planner
        root = await visitor
        pictures = {whole_key(params.image_side): await whole}
    except BaseException:
        visitor.cancel()
        whole.cancel()
        raise
    return VisualMemory(key=memory_key(image.sha256, params, runtime.identity), size=image.size,
                        objects=dict(sorted(root.kept.items())), descriptions=builder.captions,
                        nodes=len(tree.nodes()), merged_groups=tree.merged_groups, budget_hit=tree.budget_hit,
                        usage=builder.usage, parse_failures=builder.failures, dropped=builder.dropped,
                        errors=builder.errors, pictures=pictures)


def whole_key(side: int) -> tuple[str, int]:
    """:attr:`VisualMemory.pictures` key of the downsampled image at ``side`` px."""
    return ("whole", side)


def crop_key(box: Box, side: int) -> tuple[str, Box, int]:
    """:attr:`VisualMemory.pictures` key of the crop of ``box`` sent at ``side`` px."""
    return ("crop", box, side)

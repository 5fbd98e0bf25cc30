"""Answer a question with a visual memory (DC² stage 3, retrieval and the final call).

The objects most relevant to the question are found by a lexical match (word overlap with the
object name); their high-resolution crops are asked the paper's "more information ... answer
NONE" question; the final call gets the downsampled image plus the gathered text (``combine:
text``, the paper), the crops themselves (``crops``), or both.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingDependency, PromptweaveError
from ..models.base import Message
from ..models.runtime import ModelRuntime
from . import prompts
from .dc2 import DC2Params, Usage, VisualMemory, crop_key, whole_key
from .images import LoadedImage, image_part, text_part
from .tree import Box, position_words

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of in on at to is are was were what which who whom whose where when how why "
                  "this that these those image picture photo there it its and or for with by from as be "
                  "do does did can could please select correct answer options option above below".split())


def words(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def retrieve(objects: list[str], question: str, k: int) -> list[str]:
    """Up to ``k`` object names sharing words with ``question``, best share first."""
    q = words(question)
    scored = []
    for i, name in enumerate(objects):
        w = words(name)
        if w and q & w:
            scored.append((-len(q & w) / len(w), -len(q & w), i, name))
    return [name for *_, name in sorted(scored)[:k]]


_ENCODERS: dict[str, Any] = {}


def retrieve_embedding(objects: list[str], question: str, k: int, model: str, threshold: float) -> list[str]:
    """Up to ``k`` object names whose sentence embedding is closest to the question's (cosine,
    at least ``threshold``), as the reference does with Contriever; the model loads once."""
    if not model:
        raise PromptweaveError("dc2.retriever embedding needs dc2.retriever_model (a local sentence-transformers model)")
    if not objects:
        return []
    if model not in _ENCODERS:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependency("sentence-transformers", "retrieval", exc) from None
        _ENCODERS[model] = SentenceTransformer(model)
    vecs = _ENCODERS[model].encode([question, *objects], normalize_embeddings=True)
    sims = vecs[1:] @ vecs[0]
    order = sorted(range(len(objects)), key=lambda i: -float(sims[i]))
    return [objects[i] for i in order[:k] if float(sims[i]) >= threshold]


@dataclass
class Answer:
    text: str | None
    error: str | None
    chosen: list[str]
    gathered: list[str]
    usage: Usage = field(default_factory=Usage)


def _pad(box: Box, size: tuple[int, int], frac: float = 0.1) -> Box:
    """A little context around a crop, as a person zooming in would keep."""
    w, h = box[2] - box[0], box[3] - box[1]
    dx, dy = round(w * frac), round(h * frac)
    return (max(0, box[0] - dx), max(0, box[1] - dy), min(size[0], box[2] + dx), min(size[1], box[3] + dy))


async def _pictures(image: LoadedImage, memory: VisualMemory, boxes: list[Box], params: DC2Params
                    ) -> list[dict[str, Any]]:
    """The crops of ``boxes`` and, last, the downsampled image, as image_url parts: each encoded
    once per memory (the memory's build encodes the downsampled image beside the tree)."""
    keys: list[Any] = [crop_key(b, params.send_side) for b in boxes] + [whole_key(params.image_side)]
    missing = [k for k in dict.fromkeys(keys) if k not in memory.pictures]

    def encode(key: Any) -> dict[str, Any]:
        pyramid = image.pyramid()  # cut from the coarsest level that has the pixels: a crop of a
        # quarter of an 8K image shrunk from full resolution took 40 ms before the final call
        if key[0] == "whole":
            return image_part(pyramid.fit(params.image_side))
        return image_part(pyramid.crop(_pad(key[1], image.size), params.send_side))

    for key, part in zip(missing, await asyncio.gather(*(asyncio.to_thread(encode, k) for k in missing))):
        memory.pictures[key] = part
    return [memory.pictures[k] for k in keys]


async def answer(image: LoadedImage, memory: VisualMemory, question: str, runtime: ModelRuntime,
                 params: DC2Params) -> Answer:
    """Retrieve, ask the crops, and make the final call; ``question`` is the full prompt text."""
    usage = Usage()
    if params.retriever == "embedding":
        chosen = await asyncio.to_thread(retrieve_embedding, list(memory.objects), question, params.top_k,
                                         params.retriever_model or "", params.retrieval_threshold)
    else:
        chosen = retrieve(list(memory.objects), question, params.top_k)
    crops: list[tuple[str, Box]] = [(name, b) for name in chosen for b in memory.objects[name]][: params.max_crops]
    *pictures, whole = await _pictures(image, memory, [b for _, b in crops], params)
    overrides = {"max_tokens": params.max_tokens} if params.max_tokens else {}
    gathered: list[str] = []
    if params.combine in ("text", "both") and pictures:
        asks = [runtime.chat([Message("user", [pic, text_part(prompts.MORE_INFO.format(question=question))])],
                             **overrides) for pic in pictures]
        for r in await asyncio.gather(*asks):
            usage.add(r)
            if not r.ok:
                return Answer(None, r.error, chosen, gathered, usage)
            text = (r.text or "").strip()
            if text and text.strip(" .").upper() != "NONE":
                gathered.append(text)
    if params.locations and chosen:
        for name in chosen:
            places = ", ".join(f"{position_words(b, image.size)} (x {b[0]}-{b[2]}, y {b[1]}-{b[3]})"
                               for b in memory.objects[name][:4])
            gathered.append(f"The {name} is in the {places} of the {image.size[0]}x{image.size[1]} image.")
    body = prompts.FINAL.format(info="\n\n".join(gathered), question=question) if gathered else question
    content: list[dict[str, Any]] = [whole]
    if params.combine in ("crops", "both") and pictures:
        content += pictures
        body = prompts.CROPS.format(question=body)
    r = await runtime.chat([Message("user", content + [text_part(body)])], **overrides)
    usage.add(r)
    return Answer(r.text if r.ok else None, r.error, chosen, gathered, usage)

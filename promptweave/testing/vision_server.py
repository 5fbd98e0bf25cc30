"""A stand-in low-resolution vision model behind a real OpenAI-compatible HTTP server.

It behaves like a multimodal model that sees through a small window: every image it receives is
shrunk to 336 px on its longer side, and it reports only what is still visible at that size
(coloured shapes: colour, kind, rough position) in plain sentences. It answers the DC² prompts
(describe, combine patch captions, extract objects as JSON, "more information ... NONE") and
multiple-choice questions, choosing the option that its evidence (what it sees, plus any text it
was given) supports, and the first option when nothing does, as a guessing model would.

Run it as its own process (it shares the HTTP pieces of :mod:`promptweave.testing.server`)::

    python -m promptweave.testing.vision_server --port 8765 --delay 0.05

``GET /stats`` counts requests, the most in flight at once and the server's own CPU seconds
(all threads, so a benchmark can tell the stand-in's cost from the client's); ``GET /log`` lists
``[arrival, sent]`` server-clock seconds per request; ``POST /control`` takes ``{"delay": s,
"reset": true}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import re
import sys
import time
from typing import Any

import numpy as np

from .server import _Connection, _json, _Plan, serve_app

SIDE = 336
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 70, 220),
    "yellow": (235, 200, 20), "purple": (140, 50, 180), "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
_PHRASE = re.compile(r"\b(" + "|".join(PALETTE) + r")\s+(" + "|".join(SHAPES) + r")s?\b", re.I)
_OPTION = re.compile(r"^\s*([A-H])\.\s*(.+?)\s*$", re.M)
MIN_AREA = 9  # pixels at 336 px: a smaller blob is a smudge to this model


def _img(url: str) -> Any:
    from PIL import Image

    data = base64.b64decode(url.partition(",")[2] if url.startswith("data:") else url)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))),
                         Image.Resampling.BILINEAR)
    return img


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """4-connected components of a boolean mask as ``(area, x0, y0, x1, y1)`` (inclusive),
    labelled over row runs (a union-find of runs, not of pixels: a big shape is a few hundred
    runs, so looking at a patch costs about a millisecond)."""
    runs: list[tuple[int, int, int]] = []  # (row, start, end exclusive)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []
    last_y = -2
    padded = np.zeros(mask.shape[1] + 2, dtype=np.int8)
    for y in map(int, np.flatnonzero(mask.any(axis=1))):  # only rows with something in them
        if y != last_y + 1:
            prev = []
        last_y = y
        padded[1:-1] = mask[y]
        edges = np.flatnonzero(np.diff(padded))
        cur = []
        for start, end in zip(edges[::2], edges[1::2]):
            idx = len(runs)
            runs.append((y, int(start), int(end)))
            parent.append(idx)
            for j in prev:
                _, ps, pe = runs[j]
                if ps < end and start < pe:  # column ranges overlap: 4-connected
                    a, b = find(idx), find(j)
                    if a != b:
                        parent[a] = b
            cur.append(idx)
        prev = cur
    comps: dict[int, list[int]] = {}
    for i, (y, start, end) in enumerate(runs):
        root = find(i)
        c = comps.setdefault(root, [0, start, y, end - 1, y])
        c[0] += end - start
        c[1], c[2] = min(c[1], start), min(c[2], y)
        c[3], c[4] = max(c[3], end - 1), max(c[4], y)
    return [tuple(c) for c in comps.values()]  # type: ignore[misc]


def see(img: Any) -> list[dict[str, Any]]:
    """The shapes visible in ``img`` (already at model resolution): colour, shape, place, area."""
    # one plane per channel: numpy reduces over a 3-wide last axis slowly, and this runs for
    # every request (at concurrency 16 and 50 ms a call the stand-in must look at ~300 images/s)
    r, g, b = (np.ascontiguousarray(c, dtype=np.int16) for c in np.moveaxis(np.asarray(img), 2, 0))
    h, w = r.shape
    found = []
    # every palette colour is vivid, greys are not
    vivid = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)) > 60
    ys_v, xs_v = np.nonzero(vivid)
    pr, pg, pb = (c[ys_v, xs_v].astype(np.int32) for c in (r, g, b))
    for colour, (cr, cg, cb) in PALETTE.items():
        near = (pr - cr) ** 2 + (pg - cg) ** 2 + (pb - cb) ** 2 < 60 ** 2
        if int(near.sum()) < MIN_AREA:
            continue
        mask = np.zeros((h, w), dtype=bool)
        mask[ys_v[near], xs_v[near]] = True
        for area, x0, y0, x1, y1 in _components(mask):
            if area < MIN_AREA:
                continue
            bw, bh = x1 - x0 + 1, y1 - y0 + 1
            if min(bw, bh) < 3:
                continue
            fill = area / (bw * bh)
            shape = "square" if fill > 0.88 else "circle" if fill > 0.66 else "triangle"
            if x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1:
                shape = "shape"  # cut off by the frame: its kind cannot be told
            cx, cy = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
            row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
            col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
            found.append({"colour": colour, "shape": shape, "place": f"{row} {col}".strip() or "center",
                          "area": area, "x": cx, "y": cy})
    return sorted(found, key=lambda o: (o["y"], o["x"]))


def describe(objs: list[dict[str, Any]]) -> str:
    if not objs:
        return "The image shows a plain textured background with no distinct objects."
    head = f"The image shows {len(objs)} shape{'s' if len(objs) > 1 else ''} on a textured background."
    return head + "".join(f" There is {_thing(o)} in the {o['place']}." for o in objs)


def _thing(o: dict[str, Any]) -> str:
    if o["shape"] == "shape":
        return f"part of {_a(o['colour'])} {o['colour']} shape, cut off at the edge,"
    return f"{_a(o['colour'])} {o['colour']} {o['shape']}"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in re.split(r"(?<=[.!?\n])\s+", text) if s.strip()]


def choose(question: str, options: dict[str, str], evidence: list[str]) -> str:
    """The option its evidence supports most: sentences naming every colour/shape the question
    names and the option's words. No support: the first option (a guess)."""
    qwords = {w for w in re.findall(r"[a-z]+", question.lower()) if w in PALETTE or w.rstrip("s") in SHAPES}
    best, best_score = next(iter(options)), 0
    for letter, text in options.items():
        owords = set(re.findall(r"[a-z]+", text.lower()))
        score = 0
        for s in evidence:
            swords = set(re.findall(r"[a-z]+", s))
            if qwords <= swords and owords <= swords:
                score += 1
        if score > best_score:
            best, best_score = letter, score
    return f"{best}. {options[best]}"


def reply(text: str, images: list[Any]) -> str:
    """The stand-in model's answer to one request (``text``: all text parts; ``images``: decoded)."""
    seen = [see(_img(u)) for u in images]
    if "extract the existent entities" in text:
        sentence = text.rpartition('Sentence: "')[2].rpartition('"')[0]
        names = list(dict.fromkeys(f"{c.lower()} {s.lower()}" for c, s in _PHRASE.findall(sentence)))
        return json.dumps({"object_list": names})
    if "Please describe this image." in text and seen:
        return describe(seen[0])
    if "Give you patch captions" in text and seen:
        own = describe(seen[0])
        captions = text.partition("Patch Captions:")[2]
        mine = {(o["colour"], o["shape"]) for o in seen[0]}
        more = [f"{c.lower()} {s.lower()}" for c, s in dict.fromkeys(_PHRASE.findall(captions))
                if (c.lower(), s.lower()) not in mine]
        return own + (" Looking closer, the patches also show " + ", ".join(f"{_a(m)} {m}" for m in more) + "."
                      if more else "")
    if "answer NONE" in text:
        question = text.partition("Question:")[2]
        qwords = set(re.findall(r"[a-z]+", question.lower()))
        hits = [o for o in (seen[0] if seen else []) if o["colour"] in qwords or o["shape"] in qwords]
        return " ".join(f"I can see {_thing(o)}." for o in hits) or "NONE"
    query = text.rpartition("Query:")[2] if "Query:" in text else text
    context = text.rpartition("Query:")[0]
    options = dict(_OPTION.findall(query))
    question = query.split("Options:")[0]
    evidence = _sentences(context) + [s for objs in seen[:1] for s in _sentences(describe(objs))]
    if options:
        return choose(question, options, evidence)
    return describe(seen[0]) if seen else "I see no image."


class _Pending(_Plan):
    """A plan whose payload a worker thread computes (``job``) while the delay runs."""

    __slots__ = ("job",)


class _VisionConnection(_Connection):
    async def _later(self, plan: _Plan) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        job = getattr(plan, "job", None)
        try:
            if job is not None:
                plan.payload = await loop.run_in_executor(None, job)
            rest = plan.wait - (loop.time() - start)
            if rest > 0:
                await asyncio.sleep(rest)
            self.pending = None
            self._send(plan)
        finally:
            if job is not None:  # answered or abandoned (the client went away): no longer in flight
                self.app.inflight -= 1
        if self.transport is not None:
            self._process()


class VisionApp:
    """The request handler :class:`promptweave.testing.server._Connection` drives."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.started = time.monotonic()
        self.log: list[list[float | None]] = []
        self.digests: list[str] = []  # SHA-256 of each chat request's body, in arrival order
        self.requests = 0
        self.inflight = self.peak = 0
        self.cpu_at_reset = time.process_time()

    def now(self) -> float:
        return time.monotonic() - self.started

    def handle(self, method: str, target: str, body: bytes, keep_alive: bool, auth: str | None = None) -> _Plan:
        path = target.split("?", 1)[0]
        if path.endswith("/chat/completions") and method == "POST":
            return self.chat(body, keep_alive)
        if path == "/stats":
            return _Plan(_json(200, {"requests": self.requests, "inflight_peak": self.peak,
                                     "cpu_s": round(time.process_time() - self.cpu_at_reset, 4)},
                               keep_alive=keep_alive))
        if path == "/log":
            return _Plan(_json(200, {"log": self.log, "digests": self.digests}, keep_alive=keep_alive))
        if path == "/control" and method == "POST":
            req = json.loads(body or b"{}")
            self.delay = float(req.get("delay", self.delay))
            if req.get("reset"):
                self.log.clear()
                self.digests.clear()
                self.requests = 0
                self.peak = self.inflight
                self.cpu_at_reset = time.process_time()
            return _Plan(_json(200, {"delay": self.delay}, keep_alive=keep_alive))
        return _Plan(_json(404, {"error": {"message": f"no route {path}"}}, keep_alive=keep_alive))

    def chat(self, body: bytes, keep_alive: bool) -> _Plan:
        arrival = self.now()
        self.requests += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        index = len(self.log)
        self.log.append([arrival, None])
        self.digests.append(hashlib.sha256(body).hexdigest()[:16])
        # the looking happens in a worker thread during the reply's delay, as a model's
        # inference would: a call takes max(delay, analysis time), and calls overlap
        plan = _Pending(None, wait=max(self.delay, 1e-6), key="vision", index=index)
        plan.job = lambda: self._answer(body, keep_alive, index)
        return plan

    def _answer(self, body: bytes, keep_alive: bool, index: int) -> bytes:
        try:
            req = json.loads(body)
            user = [m for m in req["messages"] if m.get("role") == "user"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return _json(400, {"error": {"message": "body must be JSON with a user message"}}, keep_alive=keep_alive)
        parts = user if isinstance(user, list) else [{"type": "text", "text": str(user)}]
        text = "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
        urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
        try:
            answer = reply(text, urls)
        except Exception as exc:  # noqa: BLE001 - a bad image is the client's 400, as a real server says
            return _json(400, {"error": {"message": f"cannot read an image: {exc}"}}, keep_alive=keep_alive)
        prompt_tokens = len(text.split()) + 576 * len(urls)  # a LLaVA-style 576 tokens per image
        obj = {"id": f"vis-{index}", "object": "chat.completion", "created": int(time.time()),
               "model": str(req.get("model", "standin")),
               "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()),
                         "total_tokens": prompt_tokens + len(answer.split())}}
        return _json(200, obj, keep_alive=keep_alive)

    def sent(self, plan: _Plan) -> None:
        if plan.key == "vision":
            if plan.index < len(self.log):  # a reset may have come between arrival and reply
                self.log[plan.index][1] = self.now()


async def serve_forever(host: str, port: int, delay: float, *, watch_stdin: bool = False) -> None:
    app = VisionApp(delay)
    await serve_app(lambda: _VisionConnection(app), host, port, watch_stdin=watch_stdin)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m promptweave.testing.vision_server",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (the parent died)")
    args = p.parse_args(argv)
    asyncio.run(serve_forever(args.host, args.port, args.delay, watch_stdin=args.watch_stdin))


if __name__ == "__main__":
    main()


def _serve_vision_impl(delay: float, startup_timeout: float) -> Any:
    import os
    import subprocess
    import tempfile
    from contextlib import contextmanager

    from . import _stop, _wait_ready

    @contextmanager
    def ctx() -> Any:
        cmd = [sys.executable, "-m", "promptweave.testing.vision_server", "--port", "0", "--watch-stdin",
               "--delay", str(delay)]
        with tempfile.TemporaryFile() as errlog:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog,
                                    env=dict(os.environ))
            try:
                yield _wait_ready(proc, startup_timeout, errlog)
            finally:
                _stop(proc)

    return ctx()


def serve_vision(delay: float = 0.0, startup_timeout: float = 20.0) -> Any:
    """Context manager: the stand-in vision server in its own process on 127.0.0.1; yields its
    base URL (``http://127.0.0.1:PORT/v1``) and stops it on exit."""
    return _serve_vision_impl(delay, startup_timeout)


def control(base_url: str, **settings: Any) -> dict[str, Any]:
    """``delay=`` and/or ``reset=True`` on a running stand-in server."""
    from . import _call, _root

    return _call(_root(base_url) + "/control", settings)  # type: ignore[no-any-return]


def arrivals(base_url: str) -> list[list[float | None]]:
    """``[arrival, sent]`` server-clock seconds of every chat request since start or reset."""
    from . import _call, _root

    return _call(_root(base_url) + "/log")["log"]  # type: ignore[no-any-return]


def request_digests(base_url: str) -> list[str]:
    """A hash of every chat request's body since start or reset, in arrival order: two runs made
    the same calls when these are equal as multisets."""
    from . import _call, _root

    return _call(_root(base_url) + "/log")["digests"]  # type: ignore[no-any-return]

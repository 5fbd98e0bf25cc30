"""A synthetic HR-Bench-format set: 4K and 8K canvases with small shapes at known positions.

Each image holds two small target shapes (too small to survive a shrink to 336 px) and a few
large distractor shapes (that do survive, in other shapes, so a model that sees only those has
no evidence for the question and must guess). Two questions per image, each in the four option
cycles HR-Bench uses: ``FSP`` (the colour of the small triangle/circle/square) and ``FCP``
(which corner of the image a small shape of a given colour lies in). Rows follow the HR-Bench TSV
(``index, question, answer, category, A, B, C, D, cycle_category, image``); the later cycles of
a question refer to the first one's image by index, as VLMEvalKit TSVs do.

    python -m promptweave.vision.synthetic OUT_DIR [--n4k 2] [--n8k 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import random
from pathlib import Path
from typing import Any

from .images import pil

PALETTE = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 70, 220),
           "yellow": (235, 200, 20), "purple": (140, 50, 180), "orange": (245, 130, 20)}
SHAPES = ("circle", "square", "triangle")
CORNERS = ("top left", "top right", "bottom left", "bottom right")
CANVAS = {"4K": (3840, 2160), "8K": (7680, 4320)}
COLUMNS = ["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"]


def _draw(draw: Any, shape: str, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=rgb)


def make_image(kind: str, rng: random.Random) -> tuple[Any, list[dict[str, Any]]]:
    """One canvas and the facts of its objects (``small`` ones are the question targets)."""
    Image = pil()
    from PIL import ImageDraw

    w, h = CANVAS[kind]
    base = rng.randint(170, 205)
    noise = Image.frombytes("L", (24, 14), bytes(rng.randint(base - 8, base + 8) for _ in range(24 * 14)))
    img = Image.merge("RGB", [noise.resize((w, h), Image.Resampling.BICUBIC)] * 3)
    draw = ImageDraw.Draw(img)
    facts: list[dict[str, Any]] = []
    target_shape = rng.choice(SHAPES)
    others = [s for s in SHAPES if s != target_shape]
    colours = rng.sample(list(PALETTE), 2)  # the small targets'; distractors take other colours
    for s in rng.sample(others, 2):  # large distractors, visible at 336 px, never the asked shape
        side = w // 12
        x, y = rng.randint(w // 3, 2 * w // 3 - side), rng.randint(h // 4, 3 * h // 4 - side)
        colour = rng.choice([c for c in PALETTE if c not in colours])
        _draw(draw, s, (x, y, x + side, y + side), PALETTE[colour])
        facts.append({"shape": s, "colour": colour, "box": [x, y, x + side, y + side], "small": False})
    corners = rng.sample(CORNERS, 2)
    side = w // 160
    for i, (colour, corner) in enumerate(zip(colours, corners)):
        shape = target_shape if i == 0 else rng.choice(others)
        cx = rng.randint(w // 20, w // 3 - side - w // 20) + (2 * w // 3 if "right" in corner else 0)
        cy = rng.randint(h // 20, h // 3 - side - h // 20) + (2 * h // 3 if "bottom" in corner else 0)
        _draw(draw, shape, (cx, cy, cx + side, cy + side), PALETTE[colour])
        facts.append({"shape": shape, "colour": colour, "box": [cx, cy, cx + side, cy + side],
                      "small": True, "corner": corner})
    return img, facts


def _questions(facts: list[dict[str, Any]], rng: random.Random) -> list[tuple[str, str, list[str], str]]:
    small = [f for f in facts if f["small"]]
    t, u = small[0], small[1]
    wrong = rng.sample([c for c in PALETTE if c != t["colour"]], 3)
    fsp = ("FSP", f"What is the colour of the small {t['shape']} in the image?", [t["colour"], *wrong], t["colour"])
    corners = [u["corner"], *[c for c in CORNERS if c != u["corner"]]]
    fcp = ("FCP", f"In which part of the image is the {u['colour']} {u['shape']}?", corners, u["corner"])
    return [fsp, fcp]


def make_set(out_dir: str | Path, n4k: int = 2, n8k: int = 2, seed: int = 0, fmt: str = "JPEG") -> Path:
    """Write ``hrbench_synthetic.tsv`` (and ``facts.jsonl``, the ground truth of every object) in
    ``out_dir``; returns the TSV path."""
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    facts_out = []
    for n_img, kind in enumerate(["4K"] * n4k + ["8K"] * n8k):
        img, facts = make_image(kind, rng)
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=92) if fmt == "JPEG" else img.save(buf, format=fmt)
        b64 = base64.b64encode(buf.getvalue()).decode("ascii")
        facts_out.append({"image": n_img, "kind": kind, "size": list(img.size), "objects": facts})
        first_index = None
        for category, question, opts, truth in _questions(facts, rng):
            base = rng.sample(opts, 4)
            for cycle in range(4):
                order = base[cycle:] + base[:cycle]  # the 4 rotations HR-Bench calls cycles
                index = len(rows)
                image = b64 if first_index is None else str(first_index)
                first_index = index if first_index is None else first_index
                rows.append({"index": index, "question": question, "answer": "ABCD"[order.index(truth)],
                             "category": category, "A": order[0], "B": order[1], "C": order[2], "D": order[3],
                             "cycle_category": f"cycle{cycle}", "image": image, "resolution": kind})
    tsv = out / "hrbench_synthetic.tsv"
    with open(tsv, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + ["resolution"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    (out / "facts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in facts_out), encoding="utf-8")
    return tsv


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m promptweave.vision.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--n4k", type=int, default=2)
    p.add_argument("--n8k", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(make_set(args.out_dir, args.n4k, args.n8k, args.seed))


if __name__ == "__main__":
    main()

"""HR-Bench accuracy of the image steps of a run (``vqa``, ``dc2``), side by side.

Accuracy per category is the mean over the option cycles of each cycle's accuracy (HR-Bench's
``cycle_category``); ``strict`` counts a question right only when every cycle of it is right.
Usage is per image: every call a step made for the rows of an image, divided by the images.

    python -m promptweave.vision.report RUN_DIR
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

VISION_KINDS = ("vqa", "dc2")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def step_scores(records: list[dict[str, Any]], step_id: str) -> dict[str, Any]:
    """Accuracy (cycle-averaged and strict) per category and overall, parse failures, errors,
    and calls/tokens per image, for one step."""
    by_cat_cycle: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    questions: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    images: set[str] = set()
    calls = tokens = errors = failures = extraction_failures = budget_hits = 0
    for r in records:
        out = r.get("outputs", {}).get(step_id)
        f = r.get("fields", {})
        if out is None:
            continue
        usage = out.get("usage") or {}
        calls += int(usage.get("calls", 0))
        tokens += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        images.add(str(out.get("image_sha256") or f.get("image")))
        if out.get("error"):
            errors += 1
        if out.get("parse_status") == "failed":
            failures += 1
        memory = out.get("memory") or {}
        if memory and not out.get("memory_reused"):  # counted once per image
            extraction_failures += int(memory.get("parse_failure_count", 0))
            budget_hits += bool(memory.get("budget_hit"))
        if "answer" not in f:
            continue
        right = bool(out.get("correct"))  # an error or a parse failure is a wrong answer, and counted above
        cat = str(f.get("category", "all"))
        cycle = str(f.get("cycle_category", "cycle0"))
        for c in (cat, "all"):
            by_cat_cycle[c][cycle].append(float(right))
        questions[(cat, str(f.get("question")), str(f.get("image")))].append(right)
    acc = {c: _mean([_mean(v) or 0.0 for v in cycles.values()]) for c, cycles in sorted(by_cat_cycle.items())}
    strict: dict[str, list[float]] = defaultdict(list)
    for (cat, _, _), rights in questions.items():
        for c in (cat, "all"):
            strict[c].append(float(all(rights)))
    n_img = max(1, len(images))
    return {"accuracy": acc, "strict": {c: _mean(v) for c, v in sorted(strict.items())},
            "questions": len(questions), "rows": sum(len(v) for v in questions.values()),
            "errors": errors, "parse_failures": failures, "images": len(images),
            "object_list_parse_failures": extraction_failures, "budget_hits": budget_hits,
            "calls_per_image": calls / n_img, "tokens_per_image": tokens / n_img}


def vision_scores(steps: list[tuple[str, str]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """``{step_id: step_scores}`` for every (id, kind) whose kind is an image step."""
    return {sid: step_scores(records, sid) for sid, kind in steps if kind in VISION_KINDS}


def markdown(scores: dict[str, Any]) -> str:
    """The side-by-side table: one column per step."""
    if not scores:
        return ""
    ids = list(scores)
    cats = sorted({c for s in scores.values() for c in s["accuracy"]}, key=lambda c: (c == "all", c))
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}"  # noqa: E731
    lines = ["", "## HR-Bench accuracy (%)", "", "| | " + " | ".join(ids) + " |", "|---|" + "---|" * len(ids)]
    for c in cats:
        lines.append(f"| {c} (cycle avg) | " + " | ".join(pct(scores[i]["accuracy"].get(c)) for i in ids) + " |")
    for c in cats:
        lines.append(f"| {c} (strict) | " + " | ".join(pct(scores[i]["strict"].get(c)) for i in ids) + " |")
    for label, key, fmt in (("calls / image", "calls_per_image", "{:.1f}"), ("tokens / image", "tokens_per_image", "{:.0f}"),
                            ("answer parse failures", "parse_failures", "{}"),
                            ("object-list parse failures", "object_list_parse_failures", "{}"),
                            ("images with budget hit", "budget_hits", "{}"), ("errors", "errors", "{}")):
        lines.append(f"| {label} | " + " | ".join(fmt.format(scores[i][key]) for i in ids) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m promptweave.vision.report RUN_DIR", file=sys.stderr)
        raise SystemExit(2)
    run_dir = Path(args[0])
    try:
        records = [json.loads(x) for x in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines() if x]
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{run_dir}: not a finished run directory ({exc})", file=sys.stderr)
        raise SystemExit(2) from None
    steps = [(sid, s.get("kind", "")) for sid, s in manifest.get("steps", {}).items()]
    print(markdown(vision_scores(steps, records)).strip() or "no vqa/dc2 steps in this run")


if __name__ == "__main__":
    main()

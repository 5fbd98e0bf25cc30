"""DC² against the stand-in vision server over real HTTP: accuracy vs the baseline, concurrency
by server-side arrival times, the memory cache, and hostile images as row errors."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

import asyncio
import json
from pathlib import Path


from promptweave import run_pipeline
from promptweave.models import create_backend
from promptweave.models.runtime import ModelRuntime
from promptweave.models.spec import ModelConfig
from promptweave.testing import stats
from promptweave.testing.vision_server import arrivals, control, request_digests, serve_vision
from promptweave.vision.answer import answer
from promptweave.vision.dc2 import DC2Params, MemoryStore, build_memory, memory_key
from promptweave.vision.images import load_image
from promptweave.vision.synthetic import make_image, make_set

from ..helpers import read_jsonl
from .helpers import huge_png_header, png_bytes


@pytest.fixture(scope="module")
def server() -> str:
    with serve_vision() as url:
        yield url


def _runtime(url: str, concurrency: int = 16) -> ModelRuntime:
    cfg = ModelConfig(backend="openai", model="standin", base_url=url, max_concurrency=concurrency, cache=False)
    return ModelRuntime(cfg, create_backend(cfg))


def test_dc2_beats_the_baseline_on_a_synthetic_4k_set(server: str, tmp_path: Path) -> None:
    tsv = make_set(tmp_path / "set", n4k=1, n8k=0, seed=3)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"name: t\nmodel: {{backend: openai, model: standin, base_url: '{server}', max_concurrency: 16}}\n"
        f"data: {{path: '{tsv}', key: index}}\n"
        "steps:\n  - id: baseline\n    vqa: {}\n  - id: dc2\n    dc2: {dc2: {overlap: 0.25, send_side: 672}}\n"
        f"output: '{tmp_path / 'runs'}'\ncache: 'off'\n", encoding="utf-8")
    summary = run_pipeline(cfg, progress=False)
    v = summary.scores["vision"]
    assert summary.errors == 0
    assert v["baseline"]["accuracy"]["all"] == pytest.approx(0.25)  # blind: always the first option
    assert v["dc2"]["accuracy"]["all"] >= 0.75
    assert v["dc2"]["calls_per_image"] > v["baseline"]["calls_per_image"]
    report = (summary.run_dir / "report.md").read_text()
    assert "| all (cycle avg) | 25.0 |" in report
    rows = read_jsonl(summary.run_dir / "results.jsonl")
    built = [r for r in rows if not r["outputs"]["dc2"]["memory_reused"]]
    assert len(built) == 1  # eight questions on one image: one visual memory
    facts = json.loads((tmp_path / "set" / "facts.jsonl").read_text().splitlines()[0])
    objs = built[0]["outputs"]["dc2"]["memory"]["objects"]
    for f in (f for f in facts["objects"] if f["small"]):  # boxes, in original pixels, contain the object
        boxes = objs[f"{f['colour']} {f['shape']}"]
        x0, y0, x1, y1 = f["box"]
        assert any(b[0] <= x0 and b[1] <= y0 and b[2] >= x1 and b[3] >= y1 for b in boxes)


def test_second_question_on_an_image_costs_only_answer_calls(server: str) -> None:
    import random

    img, _ = make_image("4K", random.Random(5))
    loaded = load_image(png_bytes(img), "4k")
    params = DC2Params(overlap=0.25, send_side=336, merge_threshold=0)

    async def go() -> tuple[int, int, int]:
        rt = _runtime(server, concurrency=16)
        store = MemoryStore()
        key = memory_key(loaded.sha256, params, rt.identity)
        control(server, delay=0.0, reset=True)
        mem, reused = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))
        assert not reused and not mem.errors
        first = len(arrivals(server))
        assert first == mem.usage.calls and mem.nodes > 50
        control(server, delay=0.0, reset=True)
        mem2, reused2 = await store.get_or_build(key, lambda: build_memory(loaded, rt, params))
        ans = await answer(loaded, mem2, "What is the colour of the small circle?\nA. red\nB. blue\n", rt, params)
        await rt.aclose()
        return first, len(arrivals(server)), ans.usage.calls if reused2 else -1

    log_calls, second_calls, answer_calls = asyncio.run(go())
    assert log_calls > 100
    # the second question on the same image: only its answer calls reach the server
    assert second_calls == answer_calls and 1 <= answer_calls <= 1 + params.max_crops


def test_leaf_calls_overlap_in_time(server: str) -> None:
    import random

    img, _ = make_image("4K", random.Random(6))
    loaded = load_image(png_bytes(img), "4k")
    params = DC2Params(send_side=336, merge_threshold=0, max_depth=2)

    async def go() -> list[list[float]]:
        rt = _runtime(server, concurrency=16)
        control(server, delay=1.0, reset=True)
        mem = await build_memory(loaded, rt, params)
        await rt.aclose()
        log, counted, digests = arrivals(server), stats(server), request_digests(server)
        control(server, delay=0.0, reset=True)
        assert len(log) == mem.usage.calls and mem.nodes == 21  # equal extraction prompts share a call
        # the server's own count of calls in flight, its CPU, and one body hash per call
        assert counted["requests"] == len(log) == len(digests) and counted["cpu_s"] > 0
        peaks.append(counted["inflight_peak"])
        return log  # type: ignore[return-value]

    peaks: list[int] = []
    log = asyncio.run(go())
    # calls in flight at once, by the server's own clock: the 16 leaves go out together
    events = sorted([(a, 1) for a, _ in log] + [(snt, -1) for _, snt in log if snt is not None])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak >= 12 and peak <= peaks[0] <= 16  # the server counts a call from arrival to reply
    # and the whole build takes a few rounds of the delay (7 on the critical path), far from one per call
    span = max(snt for _, snt in log if snt is not None) - min(a for a, _ in log)
    assert span < 1.0 * len(log) / 2


def test_hostile_images_are_row_errors_and_the_run_goes_on(server: str, tmp_path: Path, monkeypatch) -> None:
    import io

    from .helpers import noise

    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(noise(500, 400)))
    (tmp_path / "bomb.png").write_bytes(huge_png_header())
    buf = io.BytesIO()
    noise(500, 400).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:400])
    (tmp_path / "text.png").write_text("hello\n")
    rows = [{"id": "good", "image": "good.png"}, {"id": "bomb", "image": "bomb.png"},
            {"id": "cut", "image": "cut.jpg"}, {"id": "text", "image": "text.png"},
            {"id": "url", "image": "http://example.com/a.png"}]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps({**r, "question": "What is it?", "A": "x", "B": "y",
                                                          "answer": "A"}) + "\n" for r in rows))
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"name: h\nmodel: {{backend: openai, model: standin, base_url: '{server}'}}\n"
        f"data: {{path: '{tmp_path / 'q.jsonl'}', key: id}}\n"
        "steps:\n  - id: d\n    dc2: {dc2: {max_depth: 1}}\n"
        f"output: '{tmp_path / 'runs'}'\ncache: 'off'\n", encoding="utf-8")
    summary = run_pipeline(cfg, progress=False)
    recs = {r["key"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert recs["good"]["status"] == "ok" and summary.errors == 4
    msg = {k: recs[k]["error"]["message"] for k in ("bomb", "cut", "text", "url")}
    assert "40000x40000" in msg["bomb"] and "over the cap" in msg["bomb"]
    assert "truncated" in msg["cut"] or "corrupt" in msg["cut"]
    assert "not an image" in msg["text"]
    assert "not fetched" in msg["url"]
    assert all("field 'image'" in m for m in msg.values())

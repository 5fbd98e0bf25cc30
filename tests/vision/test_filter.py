"""Conquer, combine and the filter, through the real runtime and a scripted model."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

from promptweave.vision.dc2 import DC2Params, build_memory
from promptweave.vision.images import LoadedImage
from promptweave.vision.prompts import parse_objects

from .helpers import noise, run, scripted_runtime

RULES = [
    {"match": r'Sentence: "A cat and a dragon', "reply": '```json\n{"object_list": ["cat", "dragon"]}\n```'},
    {"match": r'Sentence: "A cat sits', "reply": "{'object_list': ['a cat', 'Mouse',]}"},
    {"match": r"Give you patch captions", "reply": "A cat and a dragon."},
    {"match": r"Please describe this image", "reply": "A cat sits on a mat."},
]


def test_filter_keeps_what_parent_and_a_child_name_and_maps_boxes() -> None:
    rt = scripted_runtime(RULES)
    img = LoadedImage(noise(400, 400), "test", "0" * 64)
    params = DC2Params(min_side=100, max_depth=1, merge_threshold=0)
    mem = run(build_memory(img, rt, params))
    # parent: cat, dragon; children: cat, mouse. dragon (parent only) and mouse (children only) go
    assert set(mem.objects) == {"cat"}
    assert sorted(mem.objects["cat"]) == [(0, 0, 200, 200), (0, 200, 200, 400), (200, 0, 400, 200), (200, 200, 400, 400)]
    assert mem.dropped == 1 and mem.nodes == 5
    # a description per node; the four children's equal descriptions are extracted once
    assert mem.usage.calls == 5 + 2 and mem.usage.requests == 7
    assert not mem.parse_failures and not mem.errors


def test_merged_group_places_objects_in_every_member() -> None:
    from .helpers import plain

    rt = scripted_runtime(RULES)
    img = LoadedImage(plain(400, 400), "plain", "1" * 64)
    mem = run(build_memory(img, rt, DC2Params(min_side=100, max_depth=1)))
    assert mem.merged_groups == 1 and mem.nodes == 2  # four alike quarters: one representative
    assert mem.usage.calls == 4
    assert sorted(mem.objects["cat"]) == [(0, 0, 200, 200), (0, 200, 200, 400), (200, 0, 400, 200), (200, 200, 400, 400)]


def test_unparseable_object_lists_are_recorded_not_fatal() -> None:
    rules = [{"match": "Sentence:", "reply": "I think there is a cat, maybe."},
             {"match": "describe", "reply": "A cat."}, {"match": "patch captions", "reply": "A cat."}]
    mem = run(build_memory(LoadedImage(noise(400, 400), "t", "2" * 64), scripted_runtime(rules),
                           DC2Params(min_side=100, max_depth=1, merge_threshold=0)))
    assert mem.objects == {} and len(mem.parse_failures) == 5
    assert mem.parse_failures[0]["raw"] == "I think there is a cat, maybe."


def test_failed_calls_are_errors() -> None:
    from promptweave.models.runtime import ModelRuntime
    from promptweave.models.scripted import ScriptedModel
    from promptweave.models.spec import ModelConfig

    cfg = ModelConfig(backend="scripted", options={"images": True}, cache=False, max_retries=0)
    rt = ModelRuntime(cfg, ScriptedModel(rules=RULES, fail_first=1))
    mem = run(build_memory(LoadedImage(noise(400, 400), "t", "3" * 64), rt,
                           DC2Params(min_side=100, max_depth=1, merge_threshold=0)))
    assert mem.errors == ["scripted failure"]


def test_budget_caps_the_calls() -> None:
    rt = scripted_runtime(RULES)
    img = LoadedImage(noise(1600, 1600), "big", "4" * 64)
    params = DC2Params(min_side=100, max_depth=3, merge_threshold=0, budget=30, max_crops=4)
    mem = run(build_memory(img, rt, params))
    assert mem.budget_hit
    assert mem.usage.calls <= 30 - 1 - 4  # the answer's calls stay within the budget too


def test_parse_objects_table() -> None:
    cases = [
        ('{"object_list": ["Bus", "the car", "bus"]}', ["bus", "car"]),
        ("```json\n{'object_list': ['tree',]}\n```", ["tree"]),
        ('Output: ["person", "dog"]', ["person", "dog"]),
        ("[]", []),
        ("no objects here", None),
        ('{"object_list": "bus"}', None),
    ]
    for text, expected in cases:
        assert parse_objects(text)[0] == expected, text


def test_two_images_never_share_a_memory() -> None:
    from promptweave.vision.dc2 import MemoryStore, memory_key

    rt = scripted_runtime(RULES)
    params = DC2Params(min_side=100, max_depth=1, merge_threshold=0)
    a = LoadedImage(noise(400, 400, seed=1), "a", "a" * 64)
    b = LoadedImage(noise(400, 400, seed=2), "b", "b" * 64)
    store = MemoryStore()

    async def go() -> list[bool]:
        flags = []
        for img in (a, b, a):
            key = memory_key(img.sha256, params, rt.identity)
            _, reused = await store.get_or_build(key, lambda img=img: build_memory(img, rt, params))
            flags.append(reused)
        return flags

    assert run(go()) == [False, False, True]
    assert memory_key("a" * 64, params, rt.identity) != memory_key("b" * 64, params, rt.identity)
    assert memory_key("a" * 64, params, rt.identity) != memory_key("a" * 64, params.model_copy(update={"overlap": 0.1}),
                                                                  rt.identity)
    assert memory_key("a" * 64, params, rt.identity) != memory_key("a" * 64, params, {**rt.identity, "model": "other"})


def test_a_planner_failure_surfaces_instead_of_hanging(monkeypatch) -> None:
    import asyncio

    import promptweave.vision.dc2 as dc2mod

    class Broken:
        name, default_threshold, side = "broken", 0.1, 64

        def embed(self, patches):  # noqa: ANN001, ANN201
            raise RuntimeError("checkpoint unreadable")

        def distance(self, a, b):  # noqa: ANN001, ANN201
            return 0.0

    monkeypatch.setattr(dc2mod, "create_embedder", lambda *a, **k: Broken())
    rt = scripted_runtime(RULES)

    async def go() -> None:
        await asyncio.wait_for(build_memory(LoadedImage(noise(800, 800), "t", "7" * 64), rt,
                                            DC2Params(min_side=100, max_depth=2)), timeout=30)

    with pytest.raises(RuntimeError, match="checkpoint unreadable"):
        run(go())

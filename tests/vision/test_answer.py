"""Answering from a visual memory: retrieval, the NONE prompt on crops, and the combine modes."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL", reason="the vision extra (Pillow) is not installed")

from promptweave.vision.answer import answer, retrieve  # noqa: E402
from promptweave.vision.dc2 import DC2Params, Usage, VisualMemory  # noqa: E402
from promptweave.vision.images import LoadedImage  # noqa: E402

from .helpers import noise, run, scripted_runtime  # noqa: E402


def _memory() -> VisualMemory:
    return VisualMemory(key="k", size=(800, 600), objects={"red umbrella": [(0, 0, 100, 100), (700, 500, 800, 600)],
                                                           "green car": [(300, 300, 400, 400)], "tree": [(10, 10, 50, 50)]},
                        descriptions={}, nodes=5, merged_groups=0, budget_hit=False, usage=Usage())


def test_retrieve_by_shared_words() -> None:
    objs = ["red umbrella", "green car", "tree", "umbrella stand"]
    assert retrieve(objs, "What's the color of the umbrellas?", 2) == ["red umbrella", "umbrella stand"]
    assert retrieve(objs, "How many cars are there?", 2) == ["green car"]
    assert retrieve(objs, "Is it sunny?", 2) == []


RULES = [{"match": "answer NONE", "reply": "The umbrella is red."}, {"match": "Query:", "reply": "A. red"}]


@pytest.mark.parametrize("combine, calls, images_in_final", [("text", 3, 1), ("crops", 1, 3), ("both", 3, 3)])
def test_combine_modes(combine: str, calls: int, images_in_final: int) -> None:
    rt = scripted_runtime(RULES, default="B. blue")
    img = LoadedImage(noise(800, 600), "img", "5" * 64)
    params = DC2Params(combine=combine, top_k=1)
    ans = run(answer(img, _memory(), "What colour is the umbrella?\nA. red\nB. blue\n", rt, params))
    assert ans.chosen == ["red umbrella"] and ans.usage.calls == calls
    final = rt.backend.calls[-1][0].content  # type: ignore[attr-defined]
    assert sum(1 for p in final if p["type"] == "image_url") == images_in_final
    text = final[-1]["text"]
    if combine == "crops":
        assert "Query:" in text and "The umbrella is red." not in text  # only the location line
    else:
        assert "The umbrella is red." in text
        assert ans.text == "A. red"
    assert "top left (x 0-100, y 0-100)" in text  # locations: true places the retrieved object


def test_none_replies_are_not_gathered() -> None:
    rt = scripted_runtime([{"match": "answer NONE", "reply": "NONE"}], default="A")
    img = LoadedImage(noise(800, 600), "img", "6" * 64)
    ans = run(answer(img, _memory(), "What colour is the car?", rt, DC2Params(locations=False)))
    assert ans.gathered == [] and ans.usage.calls == 2
    assert rt.backend.calls[-1][0].content[-1]["text"] == "What colour is the car?"  # type: ignore[attr-defined]


def test_embedding_retriever_needs_a_model_and_says_how_to_install() -> None:
    import importlib.util

    from promptweave.errors import MissingDependency, PromptweaveError
    from promptweave.vision.answer import retrieve_embedding

    with pytest.raises(PromptweaveError, match="needs dc2.retriever_model"):
        retrieve_embedding(["tree"], "Is there a tree?", 2, "", 0.3)
    if importlib.util.find_spec("sentence_transformers") is None:
        with pytest.raises(MissingDependency, match="sentence-transformers is not installed"):
            retrieve_embedding(["tree"], "Is there a tree?", 2, "/nonexistent/model", 0.3)


def test_pictures_are_encoded_once_per_memory(monkeypatch) -> None:
    from promptweave.vision import answer as answer_module

    encoded = []
    real = answer_module.image_part
    monkeypatch.setattr(answer_module, "image_part", lambda img, side=None: encoded.append(img.size) or real(img, side))
    rt = scripted_runtime(RULES, default="B. blue")
    img = LoadedImage(noise(800, 600), "img", "7" * 64)
    memory, params = _memory(), DC2Params(top_k=1, image_side=400, send_side=200)
    first = run(answer(img, memory, "What colour is the umbrella?", rt, params))
    assert len(encoded) == 3  # the two crops of the red umbrella and the downsampled image
    again = run(answer(img, memory, "Where is the umbrella?", rt, params))
    assert len(encoded) == 3 and again.chosen == first.chosen  # the second question encodes nothing
    assert ("whole", 400) in memory.pictures and ("crop", (0, 0, 100, 100), 200) in memory.pictures

"""COMETMetric on tiny COMET checkpoints built offline (see ``comet_tiny.py``).

The checkpoints have random weights, so only the plumbing is checked: one finite score per
segment, the system score is their mean, determinism, the signature, reference handling, errors.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from promptweave.errors import DataError, MissingDependency, PromptweaveError
from promptweave.evaluators import create_metric

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"

SRC = ["Der Hund bellt laut.", "Ich habe heute keine Zeit.", "Das Wetter ist schön.",
       "Der Zug kommt um acht Uhr an.", "Wir treffen uns morgen im Büro.", "Danke für Ihre Hilfe."]
HYP = ["The dog barks loudly.", "I have no time today.", "The weather is nice.",
       "The train arrives at eight.", "We meet tomorrow in the office.", "Thanks for your help."]
REF = ["The dog is barking loudly.", "I don't have time today.", "The weather is beautiful.",
       "The train arrives at eight o'clock.", "We will meet at the office tomorrow.",
       "Thank you for your help."]


@pytest.fixture(scope="session")
def tiny_comet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny checkpoints (built once per session): kind -> model directory."""
    pytest.importorskip("comet")
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import comet_tiny
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp("comet")
    with pytest.MonkeyPatch.context() as mp:  # nothing here may touch the network
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        encoder = comet_tiny.build_encoder_dir(root / "tiny-xlmr", comet_tiny.corpus_lines(SHARED))
        return {kind: comet_tiny.build_tiny_comet(root, kind, encoder_dir=encoder).parents[1]
                for kind in ("regression", "kiwi", "referenceless")}


def _metric(model: Path | str, **options: Any) -> Any:
    return create_metric("comet", "de", "en", model=str(model), gpus=0, **options)


def _check_result(result: Any, n: int) -> None:
    assert len(result.segments) == n
    assert all(isinstance(s, float) and math.isfinite(s) for s in result.segments)
    assert result.corpus == pytest.approx(sum(result.segments) / n, rel=1e-12)


@pytest.mark.comet
def test_reference_based_scores(tiny_comet: dict[str, Path]) -> None:
    from importlib.metadata import version

    metric = _metric(tiny_comet["regression"], batch_size=4)
    assert metric.needs_reference is True
    result = metric.score(HYP, references=REF, sources=SRC)
    _check_result(result, len(HYP))
    assert result.name == "comet" and result.higher_is_better
    assert str(tiny_comet["regression"]) in result.signature
    assert f"version:{version('unbabel-comet')}" in result.signature
    assert "batch:4" in result.signature
    assert result.extra["model_class"] == "RegressionMetric"
    assert result.extra["reference_free"] is False
    assert "comet" in result.to_dict()["signature"]


@pytest.mark.comet
def test_deterministic_and_identical_inputs(tiny_comet: dict[str, Path]) -> None:
    metric = _metric(tiny_comet["regression"])
    n = 5
    result = metric.score([HYP[0]] * n, references=[REF[0]] * n, sources=[SRC[0]] * n)
    _check_result(result, n)
    # float32 kernels may round a row differently by its position in the batch (~1e-8)
    assert result.segments == pytest.approx([result.segments[0]] * n, rel=1e-6, abs=1e-7)
    again = metric.score(HYP, references=REF, sources=SRC)
    assert again.segments == metric.score(HYP, references=REF, sources=SRC).segments
    # a different input scores differently (the weights are random, not constant)
    assert len(set(again.segments)) > 1


@pytest.mark.comet
def test_checkpoint_file_and_directory_agree_and_load_once(tiny_comet: dict[str, Path]) -> None:
    from promptweave.evaluators import comet as comet_metric

    model_dir = tiny_comet["regression"]
    ckpt = model_dir / "checkpoints" / "model.ckpt"
    by_dir = _metric(model_dir).score(HYP, references=REF, sources=SRC)
    by_file = _metric(ckpt).score(HYP, references=REF, sources=SRC)
    assert by_dir.segments == by_file.segments
    assert str(ckpt) in by_file.signature
    assert comet_metric.load_model(ckpt.resolve()) is comet_metric.load_model(ckpt.resolve())


@pytest.mark.comet
@pytest.mark.parametrize("kind, model_class", [("kiwi", "UnifiedMetric"),
                                               ("referenceless", "ReferencelessRegression")])
def test_reference_free_models(tiny_comet: dict[str, Path], kind: str, model_class: str) -> None:
    metric = _metric(tiny_comet[kind], batch_size=2)
    assert metric.needs_reference is False
    result = metric.score(HYP, sources=SRC)
    _check_result(result, len(HYP))
    assert result.extra == {"checkpoint": str((tiny_comet[kind] / "checkpoints" / "model.ckpt").resolve()),
                            "model_class": model_class, "reference_free": True}
    # references are ignored by a model that does not read them
    assert metric.score(HYP, references=REF, sources=SRC).segments == result.segments


@pytest.mark.comet
def test_score_pairs(tiny_comet: dict[str, Path]) -> None:
    from promptweave.evaluators.comet import load_model, resolve_checkpoint, score_pairs

    kiwi = str(tiny_comet["kiwi"])
    scores = score_pairs(kiwi, SRC, HYP, gpus=0)
    assert len(scores) == len(HYP) and all(isinstance(s, float) for s in scores)
    loaded = load_model(resolve_checkpoint(kiwi))
    assert score_pairs(loaded, SRC, HYP, gpus=0) == scores
    assert score_pairs(kiwi, [], [], gpus=0) == []
    ref_scores = score_pairs(str(tiny_comet["regression"]), SRC, HYP, REF, gpus=0)
    assert len(ref_scores) == len(HYP)
    with pytest.raises(DataError, match="reference-based"):
        score_pairs(str(tiny_comet["regression"]), SRC, HYP, gpus=0)
    with pytest.raises(DataError, match="sources"):
        score_pairs(kiwi, SRC[:2], HYP, gpus=0)


@pytest.mark.comet
def test_input_errors(tiny_comet: dict[str, Path]) -> None:
    metric = _metric(tiny_comet["regression"])
    with pytest.raises(DataError, match="reference-based"):
        metric.score(HYP, sources=SRC)
    with pytest.raises(DataError, match="reference-based"):
        _metric(tiny_comet["regression"], reference_free=True).score(HYP, references=REF, sources=SRC)
    with pytest.raises(DataError, match="source"):
        metric.score(HYP, references=REF)
    with pytest.raises(DataError, match="nothing to score"):
        metric.score([], references=[], sources=[])
    with pytest.raises(DataError, match="references"):
        metric.score(HYP, references=REF[:3], sources=SRC)


@pytest.mark.comet
def test_missing_checkpoint_and_offline_hub_name(tmp_path: Path) -> None:
    pytest.importorskip("comet")
    with pytest.raises(DataError, match="checkpoint not found"):
        _metric(tmp_path / "nope" / "model.ckpt").score(HYP, references=REF, sources=SRC)
    with pytest.raises(PromptweaveError, match="pass a local checkpoint path") as err:
        _metric("promptweave-tests/no-such-comet-model", local_files_only=True).score(
            HYP, references=REF, sources=SRC)
    assert "\n" not in str(err.value)


def test_unknown_option() -> None:
    with pytest.raises(PromptweaveError, match="unknown option"):
        create_metric("comet", model="x", beam=3)


def test_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptweave.evaluators import comet as comet_metric

    monkeypatch.setitem(sys.modules, "comet", None)  # makes `import comet` raise ImportError
    monkeypatch.setattr(comet_metric, "_RESOLVED", {})
    with pytest.raises(MissingDependency, match=r"pip install 'promptweave\[comet\]'"):
        create_metric("comet", model="Unbabel/wmt22-comet-da").score(HYP, references=REF, sources=SRC)

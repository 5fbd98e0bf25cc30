"""The resampling for mean scores (COMET, judges, humans) is sacrebleu's: run sacrebleu's own
``PairedTest`` on a sacrebleu-style metric whose statistic is a mean, and on BLEU statistics."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from promptweave.report import stats
from promptweave.report.stats import estimate_ci, mean_stats, paired, sacrebleu_stats


class _Score:
    def __init__(self, score: float) -> None:
        self.score, self.name = score, "MEAN"


class _Sig:
    def update(self, key: str, value: Any) -> None:
        pass


class MeanMetric:
    """What sacrebleu's PairedTest calls, for a score that is the mean of segment values; the
    hypotheses are the values as strings."""

    def _extract_corpus_statistics(self, hyps: list[str], refs: Any) -> list[list[float]]:
        return [[float(h), 1.0] for h in hyps]

    def _compute_score_from_stats(self, stats: Any) -> _Score:
        return _Score(float(stats[0]) / float(stats[1]))

    def _aggregate_and_compute(self, stats: Any) -> _Score:
        return self._compute_score_from_stats(np.sum(np.array(stats, dtype=float), axis=0))

    def get_signature(self) -> _Sig:
        return _Sig()


def _systems(n: int = 120, k: int = 4) -> list[list[float]]:
    rng = random.Random(3)
    base = [rng.uniform(-10, 0) for _ in range(n)]
    # values exact in float32, so sacrebleu's float32 sums and ours agree to the last bit
    return [[round(b + rng.gauss(0.3 * j, 2.0)) / 4 for b in base] for j in range(k)]


# the default, and blocks of 7 and 1000 resamples: the draws taken in blocks of rows are
# sacrebleu's single draw (the generator's stream does not depend on the split)
BLOCK_CELLS = [stats._CHUNK_CELLS, 7 * 120, 1000 * 120]


@pytest.mark.parametrize("cells", BLOCK_CELLS)
@pytest.mark.parametrize("test", ["bs", "ar"])
def test_mean_scores_resampled_as_sacrebleu(test: str, cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "_CHUNK_CELLS", cells)
    systems = _systems()
    named = [(f"s{j}", [repr(v) for v in vals]) for j, vals in enumerate(systems)]
    _, want = PairedTest(named, {"MEAN": MeanMetric()}, references=None, test_type=test,  # type: ignore[dict-item]
                         n_samples=2000 if test == "ar" else 0, n_ar_confidence=0 if test == "ar" else -1)()
    got = paired(("s0", mean_stats(systems[0])), [(f"s{j}", mean_stats(v)) for j, v in enumerate(systems) if j],
                 test, 2000 if test == "ar" else 0, 12345)
    for g, w in zip(got, want["MEAN"]):
        assert g.score == pytest.approx(w.score, abs=1e-9)
        assert g.p_value == w.p_value or g.p_value == pytest.approx(w.p_value, abs=1e-12)
        assert g.mean == pytest.approx(w.mean, abs=1e-6) and g.ci == pytest.approx(w.ci, abs=1e-6)
    assert len({g.p_value for g in got[1:]}) > 1


@pytest.mark.parametrize("cells", [stats._CHUNK_CELLS, 3 * 80])
def test_bleu_statistics_resampled_as_sacrebleu(cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "_CHUNK_CELLS", cells)
    rng = random.Random(5)
    words = "the a cat dog sat on mat house red blue ran fast slow".split()
    refs = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(80)]
    hyps = [[" ".join(w if rng.random() < 0.5 + 0.1 * j else rng.choice(words) for w in r.split()) for r in refs]
            for j in range(3)]
    _, want = PairedTest([(f"h{j}", h) for j, h in enumerate(hyps)], {"BLEU": BLEU()}, references=[refs],
                         test_type="bs")()
    metric = BLEU()
    sts = [sacrebleu_stats(metric, h, [refs] if j == 0 else None) for j, h in enumerate(hyps)]
    got = paired(("h0", sts[0][0]), [(f"h{j}", s) for j, (s, _) in enumerate(sts) if j], "bs", 0, 12345,
                 sts[0][1])
    for g, w in zip(got, want["BLEU"]):
        assert (g.score, g.p_value) == (pytest.approx(w.score), w.p_value)
        assert g.mean == pytest.approx(w.mean) and g.ci == pytest.approx(w.ci)


def test_estimate_ci_is_the_1_40_quantiles() -> None:
    mean, half = estimate_ci(np.arange(1000, dtype=float))
    assert mean == 499.5 and half == 0.5 * (974 - 25)


def test_identical_systems_are_not_significant() -> None:
    same = mean_stats([-6.0] * 50)
    for test in ("bs", "ar"):
        res = paired(("a", same), [("b", same.copy())], test, 200, 1)  # type: ignore[arg-type]
        assert res[1].p_value == 1.0


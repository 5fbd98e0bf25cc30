"""The bootstrap's scores of many resamples at once (report/sacrescore.py) are sacrebleu's own
``_compute_score_from_stats``, to the bit, under the numpy that is installed (numpy 1 widens float32
scalars, numpy 2 keeps them: both run in CI), on the main path and on every edge."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from promptweave.report import sacrescore
from promptweave.report.sacrescore import SacreScore

METRICS = [BLEU(), BLEU(smooth_method="floor"), BLEU(smooth_method="none"), BLEU(effective_order=True),
           BLEU(max_ngram_order=2), BLEU(smooth_method="add-k"), CHRF(), CHRF(word_order=2), CHRF(beta=1),
           CHRF(beta=3, char_order=4), CHRF(eps_smoothing=True)]


def _sums(metric: object, scale: int, zeros: float, rng: np.random.Generator) -> np.ndarray:
    """Summed statistics as a resample has them (matches never above the counts), float32."""
    if isinstance(metric, BLEU):
        k = metric.max_ngram_order
        s = rng.integers(0, scale, size=(300, 2 + 2 * k)).astype(np.float32)
        s[:, 2:2 + k] = np.minimum(s[:, 2:2 + k], s[:, 2 + k:])
    else:
        s = rng.integers(0, scale, size=(300, 3 * metric.order)).astype(np.float32)  # type: ignore[attr-defined]
        s[:, 2::3] = np.minimum(s[:, 2::3], np.minimum(s[:, 0::3], s[:, 1::3]))
    s[rng.random(s.shape) < zeros] = 0
    return s


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(((got == want) | (np.isnan(got) & np.isnan(want))).all())


def _id(m: object) -> str:
    opts = {k: v for k, v in vars(m).items() if k in ("smooth_method", "effective_order", "max_ngram_order", "beta",
                                                      "char_order", "word_order", "eps_smoothing")}
    return type(m).__name__ + "-" + "-".join(f"{k}={v}" for k, v in sorted(opts.items()))


@pytest.mark.parametrize("metric", METRICS, ids=_id)
def test_many_rows_score_as_sacrebleu_scores_each(metric: object) -> None:
    rng = np.random.default_rng(7)
    for scale in (3, 60, 5000, 400_000, 4_000_000):  # sums up to float32's exact integers
        for zeros in (0.0, 0.03, 0.5):
            sums = _sums(metric, scale, zeros, rng)
            score = SacreScore(metric)
            want = np.array([score(row.copy()) for row in sums])  # (add-k changes the row it is given)
            assert _same(score.many(sums.copy()), want), (scale, zeros)
            assert score._rows is not None or isinstance(metric, BLEU) and metric.smooth_method == "add-k"


def test_the_main_path_is_taken_where_it_applies() -> None:
    """Rows with every count: the arrays' path (no row through sacrebleu but the checked ones)."""
    calls = []
    metric = CHRF()
    real = metric._compute_score_from_stats

    def counted(stats: np.ndarray) -> object:
        calls.append(1)
        return real(stats)

    metric._compute_score_from_stats = counted  # type: ignore[method-assign]
    sums = _sums(metric, 5000, 0.0, np.random.default_rng(1)) + 1
    SacreScore(metric).many(sums)
    assert len(calls) == sacrescore._CHECKED_ROWS


def test_a_sacrebleu_that_scores_otherwise_is_followed(caplog: pytest.LogCaptureFixture) -> None:
    """A later sacrebleu whose formula differs: the checked rows see it, every row is then
    sacrebleu's, said once."""
    metric = BLEU()
    real = metric._compute_score_from_stats

    class Other:
        def __init__(self, score: float) -> None:
            self.score = score

    metric._compute_score_from_stats = lambda stats: Other(math.sqrt(real(stats).score))  # type: ignore[method-assign]
    score = SacreScore(metric)
    sums = _sums(metric, 5000, 0.0, np.random.default_rng(2)) + 1
    with caplog.at_level(logging.WARNING, logger="promptweave.report"):
        got = score.many(sums)
        again = score.many(sums)
    want = np.array([score(row) for row in sums])
    assert _same(got, want) and _same(again, want)
    assert caplog.text.count("differs from sacrebleu's") == 1


def test_ter_and_float64_sums_go_through_sacrebleu() -> None:
    from sacrebleu.metrics import TER

    rng = np.random.default_rng(3)
    ter = TER()
    sums = rng.integers(0, 50, size=(40, 2)).astype(np.float32)
    score = SacreScore(ter)
    assert _same(score.many(sums), np.array([score(r) for r in sums]))
    wide = _sums(CHRF(), 500, 0.0, rng).astype(np.float64)
    chrf = SacreScore(CHRF())
    assert _same(chrf.many(wide), np.array([chrf(r) for r in wide]))

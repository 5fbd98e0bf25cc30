"""Dialogue response metrics: SQuAD-normalised unigram F1, BLEU-1/2 over paired turns."""

from __future__ import annotations

import pytest

from promptweave.evaluators import create_metric
from promptweave.evaluators.dialogue import normalize_answer, unigram_f1


def test_squad_normalisation_and_f1() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert unigram_f1("The cat sat.", "a cat sat down") == pytest.approx(0.8)  # p=1, r=2/3
    assert unigram_f1("dogs", "cats") == 0.0
    assert unigram_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # bags, not sets


def test_turns_pair_by_line_and_pool_for_the_corpus() -> None:
    f1 = create_metric("unigram_f1")
    res = f1.score(["cat sat\ndogs", "x"], ["cat sat\ncats", "a\nb"])
    assert res.segments[0] == pytest.approx(50.0)  # (100 + 0) / 2
    assert res.segments[1] is None and res.extra["rows_unpaired"] == 1  # 1 line vs 2: not scored as 0
    assert res.corpus == pytest.approx(50.0) and res.extra["turns"] == 2


def test_bleu_orders() -> None:
    hyps, refs = ["the cat sat on the mat\nhello there"], ["the cat sat on a mat\nhello there friend"]
    b1, b2 = create_metric("bleu1").score(hyps, refs), create_metric("bleu2").score(hyps, refs)
    assert 0 < b2.corpus < b1.corpus < 100
    assert create_metric("bleu1").score(["same words here"], ["same words here"]).corpus == pytest.approx(100.0)
    assert "bleu2|nrefs:1" in b2.signature

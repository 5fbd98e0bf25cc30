"""Response metrics for dialogue (MSC): unigram F1 with SQuAD normalisation, BLEU-1 and BLEU-2.

A row's hypothesis and reference hold one turn per line (the ``dialogue`` step writes them so);
turns are paired line by line. The corpus score pools every turn of every row; a segment score is
the mean over the row's turns. Scores are percentages (0-100), as in the dialogue literature.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from .base import Metric, MetricResult

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def unigram_f1(hypothesis: str, reference: str) -> float:
    """Unigram F1 (0-1) between normalised token bags, as in ParlAI/SQuAD."""
    hyp, ref = normalize_answer(hypothesis).split(), normalize_answer(reference).split()
    common = sum((Counter(hyp) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def paired_turns(hyps: list[str], refs: list[str] | None) -> list[list[tuple[str, str]] | None]:
    """Per row, its (hypothesis turn, reference turn) pairs; None when the counts differ."""
    out: list[list[tuple[str, str]] | None] = []
    for hyp, ref in zip(hyps, refs or [""] * len(hyps)):
        h, r = hyp.split("\n"), ref.split("\n")
        out.append(list(zip(h, r)) if len(h) == len(r) and ref else None)
    return out


class _TurnMetric(Metric):
    def score(self, hypotheses: list[str], references: list[str] | None = None,
              sources: list[str] | None = None) -> MetricResult:
        rows = paired_turns(hypotheses, references)
        segments: list[float | None] = []
        for pairs in rows:
            segments.append(None if not pairs else 100 * sum(self.turn(h, r) for h, r in pairs) / len(pairs))
        pooled = [p for pairs in rows if pairs for p in pairs]
        corpus = self.corpus(pooled) if pooled else None
        mismatched = sum(1 for p in rows if p is None)
        return MetricResult(self.name, corpus, segments, self.signature, extra={"turns": len(pooled),
                                                                                 "rows_unpaired": mismatched})

    def turn(self, hyp: str, ref: str) -> float:
        raise NotImplementedError

    def corpus(self, pairs: list[tuple[str, str]]) -> float:
        return 100 * sum(self.turn(h, r) for h, r in pairs) / len(pairs)


class UnigramF1Metric(_TurnMetric):
    """Unigram F1 (SQuAD normalisation), the mean over turns."""

    name = "unigram_f1"

    def turn(self, hyp: str, ref: str) -> float:
        return unigram_f1(hyp, ref)

    @property
    def signature(self) -> str:
        return "unigram_f1|norm:squad|avg:turn"


class _BleuN(_TurnMetric):
    """sacrebleu BLEU with n-grams up to ``order`` (corpus over all turns; segments: the mean
    sentence BLEU of the row's turns, effective order)."""

    order = 1

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        super().__init__(src_lang, tgt_lang, **options)
        from sacrebleu.metrics import BLEU

        self._corpus = BLEU(max_ngram_order=self.order, tokenize="13a")
        self._sentence = BLEU(max_ngram_order=self.order, tokenize="13a", effective_order=True)
        self._corpus.num_refs = self._sentence.num_refs = 1  # one gold turn per turn (for the signature)

    def turn(self, hyp: str, ref: str) -> float:
        return float(self._sentence.sentence_score(hyp, [ref]).score) / 100

    def corpus(self, pairs: list[tuple[str, str]]) -> float:
        return float(self._corpus.corpus_score([h for h, _ in pairs], [[r for _, r in pairs]]).score)

    @property
    def signature(self) -> str:
        return f"{self.name}|{self._corpus.get_signature()}|avg:corpus-of-turns"


class Bleu1Metric(_BleuN):
    name, order = "bleu1", 1


class Bleu2Metric(_BleuN):
    name, order = "bleu2", 2


__all__ = ["Bleu1Metric", "Bleu2Metric", "UnigramF1Metric", "normalize_answer", "unigram_f1"]

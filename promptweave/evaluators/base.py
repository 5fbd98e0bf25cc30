"""The metric contract: segment scores, a corpus score and a reproducibility signature.

Every metric (BLEU, COMET, an LLM judge's MQM) returns a :class:`MetricResult`. ``None`` in
``segments`` means "no score" (e.g. a judge's parse failure) and is never replaced by 0.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import MissingDependency


@dataclass
class MetricResult:
    name: str
    corpus: float | None
    segments: list[float | None]
    signature: str
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "corpus": self.corpus, "signature": self.signature,
                "higher_is_better": self.higher_is_better, **({"extra": self.extra} if self.extra else {})}


class Metric(ABC):
    """Base class. Subclasses set ``name`` and implement :meth:`score`.

    ``src_lang``/``tgt_lang`` are ISO 639-1 codes (e.g. ``zh``, ``en``); metrics use them for
    defaults such as the sacrebleu tokenizer for the target language.
    """

    name: str = "metric"
    needs_reference: bool = True
    needs_source: bool = False
    higher_is_better: bool = True
    #: (importable module, pip package, promptweave extra) the metric needs at scoring time
    requires: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        self.src_lang, self.tgt_lang, self.options = src_lang, tgt_lang, options

    def check(self) -> None:
        """Fail now, before any model call, if scoring would fail later for a reason the
        configuration decides (a missing extra, a bad option). Cheap: loads no model weights.
        Subclasses extend it (lexical metrics score a one-segment trial)."""
        for module, package, extra in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MissingDependency(package, extra, f"the '{self.name}' metric needs it")

    @abstractmethod
    def score(self, hypotheses: list[str], references: list[str] | None = None,
              sources: list[str] | None = None) -> MetricResult: ...

    @property
    def signature(self) -> str:
        return self.name

"""Metrics behind one base class and one registry."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Metric, MetricResult

#: name -> Metric subclass; third parties add ``promptweave.metrics`` entry points.
metrics: Registry[type[Metric]] = Registry("metric", "promptweave.metrics")
metrics.register("bleu", "promptweave.evaluators.lexical:BLEUMetric")
metrics.register("chrf", "promptweave.evaluators.lexical:CHRFMetric")
metrics.register("ter", "promptweave.evaluators.lexical:TERMetric")
metrics.register("comet", "promptweave.evaluators.comet:COMETMetric")
metrics.register("unigram_f1", "promptweave.evaluators.dialogue:UnigramF1Metric")
metrics.register("bleu1", "promptweave.evaluators.dialogue:Bleu1Metric")
metrics.register("bleu2", "promptweave.evaluators.dialogue:Bleu2Metric")


def create_metric(name: str, src_lang: str | None = None, tgt_lang: str | None = None,
                  **options: Any) -> Metric:
    return metrics.get(name)(src_lang=src_lang, tgt_lang=tgt_lang, **options)


__all__ = ["Metric", "MetricResult", "create_metric", "metrics"]

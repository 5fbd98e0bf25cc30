"""Step kinds. A pipeline file names a kind as the key of a step entry (``translate: {...}``)."""

from __future__ import annotations

from ...registry import Registry
from .base import Row, RunContext, Step, StepConfig

#: kind -> Step subclass; third parties add ``promptweave.steps`` entry points.
steps: Registry[type[Step]] = Registry("step kind", "promptweave.steps")
steps.register("generate", "promptweave.pipelines.steps.generate:GenerateStep")
steps.register("translate", "promptweave.pipelines.steps.translate:TranslateStep")
steps.register("mqm", "promptweave.pipelines.steps.judges:MQMStep")
steps.register("da", "promptweave.pipelines.steps.judges:DAStep")
steps.register("vqa", "promptweave.pipelines.steps.vqa:VQAStep")
steps.register("dc2", "promptweave.pipelines.steps.dc2:DC2Step")
steps.register("dialogue", "promptweave.pipelines.steps.dialogue:DialogueStep")
steps.register("dialogue_judge", "promptweave.pipelines.steps.dialogue:DialogueJudgeStep")
steps.register("memory_overlap", "promptweave.pipelines.steps.dialogue:MemoryOverlapStep")

__all__ = ["Row", "RunContext", "Step", "StepConfig", "steps"]

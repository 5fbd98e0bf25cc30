"""``dc2``: Divide, Conquer and Combine (Wang et al., AAAI 2025) on any vision chat model.

The visual memory of an image (tree descriptions, filtered objects with boxes) is built once
per image, parameters and model, and shared by every question on that image within the run;
the completion cache makes a rerun cost no calls at all.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import Field

from ...errors import PromptweaveError
from ...vision.dc2 import DC2Params
from .base import Row
from .vqa import VisionConfig, VisionStep


class DC2Config(VisionConfig):
    dc2: DC2Params = Field(default_factory=DC2Params, description="DC² parameters")


class DC2Step(VisionStep):
    Config = DC2Config
    config: DC2Config

    def prepare(self) -> None:
        from ...vision.dc2 import MemoryStore
        from ...vision.embed import embedders

        super().prepare()
        inner = self.config.dc2
        # the step's image_side / max_tokens apply unless dc2: sets its own
        outer = {k: getattr(self.config, k) for k in ("image_side", "max_tokens") if k not in inner.model_fields_set}
        self.params = inner.model_copy(update=outer)
        if self.params.embedder not in embedders:
            raise PromptweaveError(f"dc2.embedder: unknown embedder '{self.params.embedder}'; known: "
                                   f"{', '.join(embedders.names())}")
        if self.params.embedder == "clip" and not self.params.clip_checkpoint:
            raise PromptweaveError("dc2.embedder clip needs dc2.clip_checkpoint (a local CLIP checkpoint path)")
        self.store = MemoryStore()

    def describe(self) -> dict[str, Any]:
        return {"dc2": self.params.model_dump()}

    async def run(self, row: Row) -> dict[str, Any]:
        from ...vision.answer import answer
        from ...vision.dc2 import build_memory, memory_key

        self.check_backend()
        loaded = await self.load(row)
        runtime = self.ctx.model()
        key = memory_key(loaded.sha256, self.params, runtime.identity)
        memory, reused = await self.store.get_or_build(key, lambda: build_memory(loaded, runtime, self.params))
        out: dict[str, Any] = {"image_sha256": loaded.sha256, "memory": memory.summary(), "memory_reused": reused}
        if memory.errors:
            return {**out, "value": None, "error": f"{len(memory.errors)} DC² calls failed, e.g. {memory.errors[0]}"}
        text, options = self.prompt(row)
        ans = await answer(loaded, memory, text, runtime, self.params)
        mem_usage = asdict(memory.usage) if not reused else {"requests": 0, "calls": 0, "prompt_tokens": 0,
                                                             "completion_tokens": 0}
        ans_usage = asdict(ans.usage)
        out.update({"retrieved": ans.chosen, "gathered": ans.gathered, "budget_hit": memory.budget_hit,
                    "usage": {k: mem_usage[k] + ans_usage[k] for k in ans_usage},
                    "usage_memory": mem_usage, "usage_answer": ans_usage})
        if ans.error:
            return {**out, "value": None, "error": ans.error}
        return self.finish(row, ans.text, options, out)

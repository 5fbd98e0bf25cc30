"""``vqa``: the plain baseline of high-resolution VQA: the downsampled image and the question
(HR-Bench's multiple-choice prompt when the row has options A, B, ...) in one call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ...data.hrbench import options_of, parse_letter
from ...errors import ConfigError, PromptweaveError
from ...models.base import Message
from .base import Row, Step, StepConfig


class VisionConfig(StepConfig):
    image: str = Field("image", description="row field with the image: a path, file:// or data: URL, or base64")
    question: str = Field("question", description="row field with the question")
    image_dir: str | None = Field(None, description="folder relative image paths resolve against "
                                                    "(default: the pipeline file's folder)")
    max_pixels: int = Field(200_000_000, ge=1, description="refuse larger images (decompression bombs)")
    image_side: int = Field(1024, ge=64, description="longer side of the downsampled image sent")
    max_tokens: int | None = Field(None, ge=1)


class VisionStep(Step):
    """Shared by the image steps: loading the row's image safely, the prompt, the letter."""

    needs_images: ClassVar[bool] = True
    config: VisionConfig

    def prepare(self) -> None:
        from ...vision.images import pil

        pil()  # the install hint now, not on every row
        base = Path(self.config.image_dir) if self.config.image_dir else Path(".")
        self.image_dir = base if base.is_absolute() else self.ctx.base_dir / base

    def preflight(self, row: Row) -> None:
        for name in (self.config.image, self.config.question):
            if name not in row.fields:
                raise ConfigError(f"the data has no field '{name}' (row 1 has: {', '.join(row.fields)[:200]})")

    async def load(self, row: Row) -> Any:
        from ...vision.images import load_image

        name = f"row {row.key} field '{self.config.image}'"
        source = row.fields.get(self.config.image)
        if not source:
            raise PromptweaveError(f"{name}: empty")
        return await asyncio.to_thread(load_image, source, name, max_pixels=self.config.max_pixels,
                                       base_dir=self.image_dir)

    def prompt(self, row: Row) -> tuple[str, dict[str, str]]:
        from ...vision.prompts import multiple_choice

        options = options_of(row.fields)
        return multiple_choice(str(row.fields.get(self.config.question, "")), options), options

    def check_backend(self) -> None:
        """Validation refuses such a pipeline already; this covers steps built in code."""
        from ...models.base import backend_accepts_images

        cfg = self.ctx.model().cfg
        if backend_accepts_images(cfg) is False:
            raise PromptweaveError(f"backend {cfg.backend} cannot take images; use an OpenAI-compatible vision model")

    def finish(self, row: Row, text: str | None, options: dict[str, str], out: dict[str, Any]) -> dict[str, Any]:
        if options:
            letter, status = parse_letter(text, options)
        else:
            letter, status = (text or "").strip(), "ok"
        out.update({"value": letter, "raw": text, "parse_status": status})
        truth = row.fields.get("answer")
        if options and truth is not None:
            out["correct"] = letter == str(truth).strip()
        return out


class VQAStep(VisionStep):
    Config = VisionConfig

    async def run(self, row: Row) -> dict[str, Any]:
        from ...vision.images import image_part, text_part

        self.check_backend()
        loaded = await self.load(row)
        text, options = self.prompt(row)
        content = [await asyncio.to_thread(image_part, loaded.image, self.config.image_side), text_part(text)]
        overrides = {"max_tokens": self.config.max_tokens} if self.config.max_tokens else {}
        res = await self.ctx.model().chat([Message("user", content)], **overrides)
        usage = {"requests": 1, "calls": 0 if res.cached else 1, "prompt_tokens": res.prompt_tokens,
                 "completion_tokens": res.completion_tokens}
        out: dict[str, Any] = {"image_sha256": loaded.sha256, "usage": usage, "call": res.trace()}
        if not res.ok:
            return {**out, "value": None, "error": res.error}
        return self.finish(row, res.text, options, out)

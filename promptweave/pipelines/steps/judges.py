"""LLM judges as pipeline steps.

:class:`MQMStep` annotates a translation with MQM errors by one of three methods and turns them
into a score (higher is better, 0 = no error):

- ``gemba_mqm``: one few-shot call, errors under Critical/Major/Minor (Kocmi & Federmann 2023).
- ``eaprompt``: one-shot error analysis, then the counts "major, minor" (Lu et al. 2023).
- ``mqm_ape``: GEMBA-MQM's errors, each post-edited and the post-edit verified pairwise (or by
  CometKiwi); an error counts as much as fixing it helps (Lu et al. 2024).

:class:`DAStep` asks for a 0-100 direct-assessment score (GEMBA-DA).

Every step output keeps the raw replies, a ``parse_status`` and the call traces. Replies are read
by the paper's own rules (``parse: reference``) or leniently (``parse: robust``); re-asks after a
parse failure or a reply cut at ``max_tokens`` follow each method's reference code
(:mod:`.judge_base`). A reply that still cannot be parsed gives ``value: None`` with
``parse_status: "failed"``, never a 0; a model call that fails gives ``error``, so the row can be
retried. MQM-APE's post-edit and verification calls are in :mod:`.mqm_ape`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field, model_validator

from ...evaluators.mqm import GEMBA_MQM, MQM_APE, eaprompt_scoring
from ...prompts.parsers import MQMError, Parsed
from .judge_base import Judge, JudgeConfig, finish, nonempty
from .mqm_ape import MQMAPEMixin


class MQMConfig(JudgeConfig):
    """The ``mqm:`` step block."""

    method: Literal["gemba_mqm", "eaprompt", "mqm_ape"] = "gemba_mqm"
    reference: bool = Field(False, description="eaprompt: show the reference (gemba_mqm/mqm_ape are reference-free)")
    variant: Literal["itemized", "detailed"] = Field("itemized", description="eaprompt: demonstration answer style")
    two_step: bool = Field(True, description="eaprompt: a second call asks for the counts; false: one call")
    count: Literal["llm", "regex"] = Field(
        "llm", description="eaprompt: counts from the model, or by counting the itemized list (no second call)")
    w_major: float = Field(5.0, ge=0, description="eaprompt: points per major error (minor = 1)")
    verifier: Literal["llm", "cometkiwi"] = Field("llm", description="mqm_ape: pairwise LLM verifier or CometKiwi")
    comet_model: str = Field("Unbabel/wmt22-cometkiwi-da", description="mqm_ape: CometKiwi checkpoint name or path")
    kiwi_threshold: float = Field(0.03, ge=0, description="mqm_ape: CometKiwi gain/loss that decides keep/drop")

    @model_validator(mode="after")
    def _options_fit_method(self) -> MQMConfig:
        owner = {"variant": "eaprompt", "two_step": "eaprompt", "count": "eaprompt", "w_major": "eaprompt",
                 "verifier": "mqm_ape", "comet_model": "mqm_ape", "kiwi_threshold": "mqm_ape"}
        for key in sorted(self.model_fields_set):
            if owner.get(key, self.method) != self.method:
                raise ValueError(f"'{key}' is an option of method {owner[key]}, not {self.method}")
        if self.reference and self.method != "eaprompt":
            raise ValueError(f"method {self.method} is reference-free; 'reference: true' is for eaprompt")
        if self.count == "regex" and self.variant == "detailed":
            raise ValueError("'count: regex' counts an itemized list; use 'variant: itemized'")
        return self


class DAConfig(JudgeConfig):
    """The ``da:`` step block (GEMBA-DA)."""

    reference: bool = Field(False, description="score against the row's reference (GEMBA-DA_ref)")


class DAStep(Judge):
    """GEMBA-DA: a 0-100 score for the translation, source-only or with the reference."""

    Config = DAConfig
    config: DAConfig
    method = "gemba_da"

    def template_names(self) -> list[str]:
        return ["judges/gemba-da-ref" if self.config.reference else "judges/gemba-da"]

    async def judge(self, v: dict[str, Any]) -> dict[str, Any]:
        name = self.template_names()[0]
        asked = await self._ask("da", self._render(name, v), self.parser("da"))
        out: dict[str, Any] = {"method": "gemba_da", "parse": self.config.parse}
        done = finish(out, asked)
        if done:
            return done
        return {**out, "value": asked.parsed.value, "parse_status": "ok"}  # type: ignore[union-attr]


class MQMStep(MQMAPEMixin, Judge):
    """MQM error annotation and scoring by ``gemba_mqm``, ``eaprompt`` or ``mqm_ape``."""

    Config = MQMConfig
    config: MQMConfig

    @property  # type: ignore[override]
    def method(self) -> str:
        return self.config.method

    def template_names(self) -> list[str]:
        c = self.config
        if c.method == "eaprompt":
            return ["judges/eaprompt"] + (["judges/eaprompt-count"] if c.two_step and c.count == "llm" else [])
        if c.method == "mqm_ape":
            names = ["judges/gemba-mqm", "judges/mqm-ape-postedit"]
            return names + (["judges/mqm-ape-verify"] if c.verifier == "llm" else [])
        return ["judges/gemba-mqm"]

    def prepare(self) -> None:
        super().prepare()
        self._kiwi: Any = None
        if self.config.method == "mqm_ape" and self.config.verifier == "cometkiwi":
            from ...evaluators import create_metric  # the registry imports comet lazily

            self._kiwi = create_metric("comet", src_lang=self.ctx.src_lang, tgt_lang=self.ctx.tgt_lang,
                                       model=self.config.comet_model)
            self._kiwi_lock = asyncio.Lock()  # one model, scored one batch at a time

    def describe(self) -> dict[str, Any]:
        scoring = {"gemba_mqm": GEMBA_MQM, "mqm_ape": MQM_APE,
                   "eaprompt": eaprompt_scoring(self.config.w_major)}[self.config.method]
        return {**super().describe(), "scoring": scoring.describe()}

    async def judge(self, v: dict[str, Any]) -> dict[str, Any]:
        if self.config.method == "eaprompt":
            return await self._eaprompt(v)
        if self.config.method == "mqm_ape":
            return await self._mqm_ape(v)
        return await self._gemba_mqm(v)

    # ------------------------------------------------------------------ GEMBA-MQM
    async def _gemba_mqm(self, v: dict[str, Any]) -> dict[str, Any]:
        asked = await self._ask("evaluator", self._render("judges/gemba-mqm", v), self.parser("gemba_mqm"))
        out: dict[str, Any] = {"method": "gemba_mqm", "parse": self.config.parse}
        if asked.parsed is not None:
            out.update(errors=[e.to_dict() for e in asked.parsed.value or []], dropped=asked.parsed.dropped)
        done = finish(out, asked)
        if done:
            return done
        errors: list[MQMError] = asked.parsed.value  # type: ignore[union-attr,assignment]
        return {**out, "value": GEMBA_MQM.score(e.severity for e in errors), "parse_status": "ok"}

    # ------------------------------------------------------------------ EAPrompt
    def _demo(self, src: str | None, tgt: str | None) -> str:
        meta = self.templates["judges/eaprompt"].meta
        base = [(c or "").lower().replace("_", "-").split("-")[0] for c in (src, tgt)]
        pair = f"{base[0]}-{base[1]}"
        if pair in meta["demos"]:
            return pair
        fallback = meta["demo_fallback"]
        return str(fallback["by_target"].get(base[1], fallback["default"]))

    def _eaprompt_vars(self, v: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        demo = self._demo(v.get("src_lang"), v.get("tgt_lang"))
        return {**v, "demo_pair": demo, "demo": self.templates["judges/eaprompt"].meta["demos"][demo],
                "use_reference": c.reference, "demo_style": c.variant, "single_step": not c.two_step}

    def _preflight_vars(self, name: str, v: dict[str, Any]) -> dict[str, Any]:
        return self._eaprompt_vars(v) if name == "judges/eaprompt" else super()._preflight_vars(name, v)

    def _single_step_counts(self, text: str) -> Parsed[tuple[int, int]]:
        """One-call EAPrompt: the counts close the reply (reference: its last line is ``x, x``)."""
        if self.config.parse == "robust":
            return self.parser("ea_counts")(text)
        lines = [ln for ln in str(text).split("\n") if ln.strip()]
        return self.parser("ea_counts")(lines[-1] if lines else "")

    async def _eaprompt(self, v: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        tpl_vars = self._eaprompt_vars(v)
        demo = tpl_vars["demo_pair"]
        llm_count_here = c.count == "llm" and not c.two_step
        parse1 = self.parser("ea_errors") if c.count == "regex" else (
            self._single_step_counts if llm_count_here else nonempty)
        asked = await self._ask("analysis", self._render("judges/eaprompt", tpl_vars), parse1)
        out: dict[str, Any] = {"method": "eaprompt", "parse": c.parse, "demo": demo, "count_source": c.count}
        done = finish(out, asked)
        if done:
            return done
        analysis = asked.text or ""
        items = self.parser("ea_errors")(analysis)
        out["errors"] = [e.to_dict() for e in items.value or []]
        if c.count == "regex":
            errs: list[MQMError] = asked.parsed.value  # type: ignore[union-attr,assignment]
            counts = (sum(e.severity == "major" for e in errs), sum(e.severity == "minor" for e in errs))
        elif llm_count_here:
            counts = asked.parsed.value  # type: ignore[union-attr,assignment]
        else:
            asked2 = await self._ask("count", self._render("judges/eaprompt-count", {"analysis": analysis}),
                                     self.parser("ea_counts"))
            out["raw_count"] = asked2.text
            done = finish(out, asked2)
            if done:
                return done
            counts = asked2.parsed.value  # type: ignore[union-attr,assignment]
        score = eaprompt_scoring(c.w_major).score(["major"] * counts[0] + ["minor"] * counts[1])
        return {**out, "value": score, "counts": {"major": counts[0], "minor": counts[1]},
                "parse_status": "ok"}

__all__ = ["DAConfig", "DAStep", "JudgeConfig", "MQMConfig", "MQMStep"]

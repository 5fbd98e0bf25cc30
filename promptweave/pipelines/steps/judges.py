"""LLM judges as pipeline steps.

:class:`MQMStep` annotates a translation with MQM errors by one of three methods and turns them
into a score (higher is better, 0 = no error):

- ``gemba_mqm``: one few-shot call, errors under Critical/Major/Minor (Kocmi & Federmann 2023).
- ``eaprompt``: one-shot error analysis, then the counts "major, minor" (Lu et al. 2023).
- ``mqm_ape``: GEMBA-MQM's errors, each post-edited and the post-edit verified pairwise (or by
  CometKiwi); an error counts as much as fixing it helps (Lu et al. 2024).

:class:`DAStep` asks for a 0-100 direct-assessment score (GEMBA-DA).

Every step output keeps the raw replies, a ``parse_status`` and the call traces. A reply that
cannot be parsed (after ``max_parse_retries`` retries at temperature +0.1 each, when
``on_parse_error: retry``) gives ``value: None`` with ``parse_status: "failed"``, never a 0;
a model call that fails gives ``error``, so the row can be retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from ...errors import PromptweaveError, TemplateError
from ...evaluators.mqm import GEMBA_MQM, MQM_APE, SEVERITIES, eaprompt_scoring
from ...models.base import Message
from ...models.runtime import ModelRuntime
from ...prompts import PromptTemplate, get_template
from ...prompts.parsers import (MQMError, Parsed, parse_da_score, parse_eaprompt_counts,
                                parse_eaprompt_errors, parse_gemba_mqm, parse_mqm_ape_errors,
                                parse_post_edit, parse_verdict)
from .base import Row, Step, StepConfig


class JudgeConfig(StepConfig):
    """Options every judge shares."""

    translation: str = Field("translation", description="row field or step id holding the hypothesis")
    on_parse_error: Literal["retry", "missing"] = Field(
        "retry", description="retry: ask again at temperature +0.1 (as GEMBA); missing: no score")
    max_parse_retries: int = Field(5, ge=0, le=10, description="retries per call after a parse failure")
    temperature: float | None = Field(None, ge=0, description="overrides model.temperature (0 recommended)")
    max_tokens: int | None = Field(None, ge=1, description="overrides model.max_tokens")


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


@dataclass
class _Asked:
    """One question to the model, parse retries included."""

    parsed: Parsed[Any] | None = None
    text: str | None = None
    error: str | None = None
    traces: list[dict[str, Any]] = field(default_factory=list)


# values for the variables a step fills in itself, so that preflight renders every template
_PREFLIGHT_VARS = {"error_category": "accuracy/mistranslation", "error_span": "x", "translation_a": "a",
                   "translation_b": "b", "analysis": "Major errors:"}


def _nonempty(text: str) -> Parsed[str]:
    return Parsed(text) if text.strip() else Parsed(None, reason="empty reply")


class _Judge(Step):
    """Shared plumbing: the model, template variables, and asking with a parse policy."""

    config: JudgeConfig
    @property
    def needs_reference(self) -> bool:
        """Both judge configs have ``reference``: the row must then carry one."""
        return bool(getattr(self.config, "reference", False))

    def prepare(self) -> None:
        self.templates: dict[str, PromptTemplate] = {n: get_template(n) for n in self.template_names()}
        self._prepared = True

    @property
    def runtime(self) -> ModelRuntime:
        """The judge's model (looked up on use: the engine builds models after prepare); a step
        picks a named model with the step-level ``model:`` key, checked when the file loads."""
        return self.ctx.model()

    def preflight(self, row: Row) -> None:
        if not getattr(self, "_prepared", False):
            self.prepare()
        v, problem = self._variables(row)
        if problem:
            raise TemplateError(f"step '{self.id}': {problem}")
        for name in self.template_names():
            self._render(name, self._preflight_vars(name, v))

    def _preflight_vars(self, name: str, v: dict[str, Any]) -> dict[str, Any]:
        return {**_PREFLIGHT_VARS, **v}

    def template_names(self) -> list[str]:
        raise NotImplementedError

    def fingerprint_inputs(self) -> dict[str, str]:
        return {f"template {n}": t.sha256 for n, t in self.templates.items()}

    def describe(self) -> dict[str, Any]:
        return {"templates": {n: get_template(n).sha256 for n in self.template_names()},
                **self.config.model_dump()}

    def _variables(self, row: Row) -> tuple[dict[str, Any], str | None]:
        """Template variables with ``translation`` set to the hypothesis, or an error text."""
        v = row.variables(self.ctx)
        hyp = v.get(self.config.translation)
        if hyp is None:
            return v, (f"no translation: '{self.config.translation}' is not a field of the row or a "
                       f"finished step (did that step fail?)")
        need = ["source", "src_lang_name", "tgt_lang_name"] + (["reference"] if self.needs_reference else [])
        missing = [k for k in need if v.get(k) is None]
        if missing:
            return v, (f"the row lacks {', '.join(missing)} (set data.src_lang/tgt_lang for the language "
                       f"names, and map the source/reference fields)")
        return {**v, "translation": str(hyp)}, None

    def _render(self, name: str, variables: dict[str, Any]) -> list[Message]:
        return self.templates[name].render(variables)

    async def _ask(self, label: str, messages: list[Message], parse: Callable[[str], Parsed[Any]]) -> _Asked:
        retries = self.config.max_parse_retries if self.config.on_parse_error == "retry" else 0
        runtime = self.runtime
        base = runtime.params.temperature if self.config.temperature is None else self.config.temperature
        out = _Asked()
        for attempt in range(retries + 1):
            # as GEMBA: an unparsable reply is asked again, 0.1 warmer each time
            temperature = round(base + 0.1 * attempt, 2)
            res = await runtime.chat(messages, temperature=temperature, max_tokens=self.config.max_tokens)
            trace = {"call": label, "temperature": temperature, **res.trace()}
            out.traces.append(trace)
            if not res.ok or res.text is None:
                out.error = f"{label}: {res.error or 'no text'}"
                return out
            out.text, out.parsed = res.text, parse(res.text)
            trace["parse_status"] = out.parsed.status
            if out.parsed.ok:
                return out
            trace.update(parse_error=out.parsed.reason, raw=res.text)  # keep what failed to parse
        return out

    async def run(self, row: Row) -> dict[str, Any]:
        if not getattr(self, "_prepared", False):
            self.prepare()
        v, problem = self._variables(row)
        if problem:
            return {"value": None, "error": problem}
        return await self.judge(v)

    async def judge(self, v: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def _finish(out: dict[str, Any], asked: _Asked) -> dict[str, Any] | None:
    """Fill raw/parse fields from ``asked``; return the final output when it ends the step."""
    out.setdefault("calls", []).extend(asked.traces)
    out.setdefault("raw", asked.text)
    if asked.error:
        return {**out, "value": None, "error": asked.error}
    assert asked.parsed is not None
    if not asked.parsed.ok:
        return {**out, "value": None, "parse_status": "failed", "parse_error": asked.parsed.reason}
    return None


class DAStep(_Judge):
    """GEMBA-DA: a 0-100 score for the translation, source-only or with the reference."""

    Config = DAConfig
    config: DAConfig

    def template_names(self) -> list[str]:
        return ["judges/gemba-da-ref" if self.config.reference else "judges/gemba-da"]

    async def judge(self, v: dict[str, Any]) -> dict[str, Any]:
        name = self.template_names()[0]
        asked = await self._ask("da", self._render(name, v), parse_da_score)
        out: dict[str, Any] = {"method": "gemba_da"}
        done = _finish(out, asked)
        if done:
            return done
        return {**out, "value": asked.parsed.value, "parse_status": "ok"}  # type: ignore[union-attr]


class MQMStep(_Judge):
    """MQM error annotation and scoring by ``gemba_mqm``, ``eaprompt`` or ``mqm_ape``."""

    Config = MQMConfig
    config: MQMConfig

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
        asked = await self._ask("evaluator", self._render("judges/gemba-mqm", v), parse_gemba_mqm)
        out: dict[str, Any] = {"method": "gemba_mqm"}
        if asked.parsed is not None:
            out.update(errors=[e.to_dict() for e in asked.parsed.value or []], dropped=asked.parsed.dropped)
        done = _finish(out, asked)
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

    async def _eaprompt(self, v: dict[str, Any]) -> dict[str, Any]:
        c = self.config
        tpl_vars = self._eaprompt_vars(v)
        demo = tpl_vars["demo_pair"]
        llm_count_here = c.count == "llm" and not c.two_step
        parse1 = parse_eaprompt_errors if c.count == "regex" else (
            parse_eaprompt_counts if llm_count_here else _nonempty)
        asked = await self._ask("analysis", self._render("judges/eaprompt", tpl_vars), parse1)
        out: dict[str, Any] = {"method": "eaprompt", "demo": demo, "count_source": c.count}
        done = _finish(out, asked)
        if done:
            return done
        analysis = asked.text or ""
        items = parse_eaprompt_errors(analysis)
        out["errors"] = [e.to_dict() for e in items.value or []]
        if c.count == "regex":
            errs: list[MQMError] = asked.parsed.value  # type: ignore[union-attr,assignment]
            counts = (sum(e.severity == "major" for e in errs), sum(e.severity == "minor" for e in errs))
        elif llm_count_here:
            counts = asked.parsed.value  # type: ignore[union-attr,assignment]
        else:
            asked2 = await self._ask("count", self._render("judges/eaprompt-count", {"analysis": analysis}),
                                     parse_eaprompt_counts)
            out["raw_count"] = asked2.text
            done = _finish(out, asked2)
            if done:
                return done
            counts = asked2.parsed.value  # type: ignore[union-attr,assignment]
        score = eaprompt_scoring(c.w_major).score(["major"] * counts[0] + ["minor"] * counts[1])
        return {**out, "value": score, "counts": {"major": counts[0], "minor": counts[1]},
                "parse_status": "ok"}

    # ------------------------------------------------------------------ MQM-APE
    async def _mqm_ape(self, v: dict[str, Any]) -> dict[str, Any]:
        asked = await self._ask("evaluator", self._render("judges/gemba-mqm", v), parse_mqm_ape_errors)
        out: dict[str, Any] = {"method": "mqm_ape", "verifier": self.config.verifier}
        if asked.parsed is not None:
            out["dropped"] = asked.parsed.dropped
        done = _finish(out, asked)
        if done:
            return {**done, "errors": []}
        errors: list[MQMError] = asked.parsed.value  # type: ignore[union-attr,assignment]
        # every error is post-edited and verified independently: fan out
        results = await asyncio.gather(*(self._fix_and_verify(v, e, i) for i, e in enumerate(errors)))
        records = [rec for rec, _ in results]
        for _, traces in results:
            out["calls"].extend(traces)
        failed = [rec["error"] for rec in records if rec.get("error")]
        if not failed and self._kiwi is not None:
            failed = await self._kiwi_verify(v, records)
        out.update(errors=records, post_edits=[r.get("post_edit") for r in records],
                   votes=[r.get("votes") for r in records])
        if failed:
            return {**out, "value": None, "error": "; ".join(failed)}
        sub_failures = sum(r["status"] != "ok" for r in records)
        return {**out,
                "value": MQM_APE.score((r["severity"], r["keep"]) for r in records),
                "value_unverified": MQM_APE.score(r["severity"] for r in records),
                "ape": _best_post_edit(records, v["translation"]),
                "parse_status": "partial" if sub_failures else "ok"}

    async def _fix_and_verify(self, v: dict[str, Any], err: MQMError, i: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rec: dict[str, Any] = {**err.to_dict(), "post_edit": None, "votes": [], "keep": 0.5, "status": "ok"}
        pe_vars = {**v, "error_category": err.category, "error_span": err.span}
        pe = await self._ask(f"post_edit[{i}]", self._render("judges/mqm-ape-postedit", pe_vars), parse_post_edit)
        traces = list(pe.traces)
        rec["post_edit_raw"] = pe.text
        if pe.error:
            return {**rec, "error": pe.error}, traces
        if not pe.parsed or not pe.parsed.ok:
            return {**rec, "status": "post_edit_failed"}, traces  # unverifiable: counts half
        rec["post_edit"] = post_edit = pe.parsed.value
        if self._kiwi is not None:
            return rec, traces  # verified in one CometKiwi batch once every post-edit is in
        orders = [("original", "post_edit", v["translation"], post_edit),
                  ("post_edit", "original", post_edit, v["translation"])]
        asked = await asyncio.gather(*(
            self._ask(f"verify[{i}].{k}", self._render("judges/mqm-ape-verify",
                                                       {**v, "translation_a": a, "translation_b": b}),
                      parse_verdict)
            for k, (_, _, a, b) in enumerate(orders, 1)))
        winners: list[str | None] = []
        for (name_a, name_b, _, _), ans in zip(orders, asked):
            traces.extend(ans.traces)
            if ans.error:
                return {**rec, "error": ans.error}, traces
            verdict = ans.parsed.value if ans.parsed else None
            winner = {"A": name_a, "B": name_b}.get(verdict or "")
            winners.append(winner)
            rec["votes"].append({"a": name_a, "b": name_b, "verdict": verdict, "winner": winner, "raw": ans.text})
        if None in winners:
            rec["status"] = "verdict_failed"
        # MQM-APE (module_verifier.py): the post-edit wins both orders -> the error was real (1);
        # the original wins both -> the "error" was not one (0); anything else is a tie (0.5)
        rec["keep"] = 1.0 if winners == ["post_edit"] * 2 else 0.0 if winners == ["original"] * 2 else 0.5
        return rec, traces

    async def _kiwi_verify(self, v: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
        edited = [r for r in records if r["post_edit"] is not None]
        if not edited:
            return []
        hyps = [v["translation"]] + [r["post_edit"] for r in edited]
        try:
            async with self._kiwi_lock:
                result = await asyncio.to_thread(self._kiwi.score, hyps, None, [v["source"]] * len(hyps))
        except PromptweaveError:
            raise
        except Exception as exc:  # noqa: BLE001 - a scoring crash fails the row visibly
            return [f"cometkiwi: {type(exc).__name__}: {exc}"]
        base, scores = result.segments[0], result.segments[1:]
        if base is None:
            return ["cometkiwi gave no score for the translation"]
        t = self.config.kiwi_threshold
        for rec, s in zip(edited, scores):
            rec["votes"] = [{"cometkiwi_translation": base, "cometkiwi_post_edit": s}]
            if s is None:
                rec["status"] = "verdict_failed"
            else:
                rec["keep"] = 1.0 if s - base > t else 0.0 if base - s > t else 0.5
                rec["cometkiwi_gain"] = s - base
        return []


def _best_post_edit(records: list[dict[str, Any]], translation: str) -> str:
    """The best verified post-edit: among those that beat the original outright (keep 1: both
    pairwise orders, or a CometKiwi gain above the threshold), the one with the highest gain,
    then of the most severe error. The original translation when none did: a tie is no proof
    that the edit helped."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    winners = [r for r in records if r["post_edit"] is not None and r["keep"] == 1.0]
    if not winners:
        return translation
    best = min(winners, key=lambda r: (-r.get("cometkiwi_gain", 0.0), rank[r["severity"]]))
    return str(best["post_edit"])


__all__ = ["DAConfig", "DAStep", "JudgeConfig", "MQMConfig", "MQMStep"]

"""What every LLM judge step shares: the options, the parser choice and the asking policy.

``parse: reference`` reads replies exactly as the paper's code does
(:mod:`promptweave.prompts.reference`); ``parse: robust`` reads them leniently
(:mod:`promptweave.prompts.parsers`). The retry and truncation defaults follow each method's
reference code (GEMBA ``gpt_api.py``; MQM-APE and EAPrompt ask once at temperature 0):

============  ======================================  ==========================================
method        unparsable reply                        reply cut at ``max_tokens``
============  ======================================  ==========================================
gemba_da      ask again 0.1 warmer, up to 1.0         ask again with 200 more tokens
gemba_mqm     never re-asked (GEMBA never fails)      ask again with 200 more tokens
eaprompt      no retry: a missing score               a parse failure
mqm_ape       no retry: a missing score               a parse failure
============  ======================================  ==========================================

A reply whose chat end-of-turn token (``<|eot_id|>`` ...) came before the cut is complete: the
parsers read only what precedes it, as MQM-APE does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ...errors import TemplateError
from ...models.base import Message
from ...models.runtime import CallResult, ModelRuntime
from ...prompts import PromptTemplate, get_template
from ...prompts import parsers as robust
from ...prompts import reference as ref
from ...prompts.parsers import _SPECIAL, Parsed
from .base import Row, Step, StepConfig

ParseMode = Literal["reference", "robust"]
Truncated = Literal["fail", "more_tokens", "accept"]

#: (reply kind, parse mode) -> parser
PARSERS: dict[tuple[str, str], Callable[[str], Parsed[Any]]] = {
    ("gemba_mqm", "reference"): ref.parse_gemba_mqm_reference, ("gemba_mqm", "robust"): robust.parse_gemba_mqm,
    ("da", "reference"): ref.parse_da_reference, ("da", "robust"): robust.parse_da_score,
    ("mqm_ape", "reference"): ref.parse_mqm_ape_reference, ("mqm_ape", "robust"): robust.parse_mqm_ape_errors,
    ("post_edit", "reference"): ref.parse_post_edit_reference, ("post_edit", "robust"): robust.parse_post_edit,
    ("verdict", "reference"): ref.parse_verdict_reference, ("verdict", "robust"): robust.parse_verdict,
    ("ea_counts", "reference"): ref.parse_eaprompt_counts_reference,
    ("ea_counts", "robust"): robust.parse_eaprompt_counts,
    ("ea_errors", "reference"): ref.parse_eaprompt_errors_reference,
    ("ea_errors", "robust"): robust.parse_eaprompt_errors,
}

#: method -> (parse retries, on_truncated), as each reference does
DEFAULTS: dict[str, tuple[int, Truncated]] = {
    "gemba_da": (10, "more_tokens"), "gemba_mqm": (0, "more_tokens"),
    "eaprompt": (0, "fail"), "mqm_ape": (0, "fail"),
}
TOKEN_STEP = 200  # GEMBA's gpt_api.py: max_tokens + 200 per re-ask


class JudgeConfig(StepConfig):
    """Options every judge shares."""

    translation: str = Field("translation", description="row field or step id holding the hypothesis")
    parse: ParseMode = Field(
        "robust", description="reference: the paper code's reply rules (for reproducing a paper); "
                              "robust: a lenient reader for weaker judge models")
    on_parse_error: Literal["retry", "missing"] | None = Field(
        None, description="retry: ask again 0.1 warmer; missing: no score (default: as the method's reference)")
    max_parse_retries: int | None = Field(
        None, ge=0, le=10, description="re-asks after a parse failure (default: 10 for gemba_da, else 0)")
    on_truncated: Truncated | None = Field(
        None, description="a reply cut at max_tokens: fail, more_tokens (+200, as GEMBA) or accept "
                          "(read as is, flagged); default: as the method's reference")
    max_token_retries: int = Field(3, ge=0, le=10, description="re-asks with more tokens (on_truncated: more_tokens)")
    temperature: float | None = Field(None, ge=0, description="overrides model.temperature (0 recommended)")
    max_tokens: int | None = Field(None, ge=1, description="overrides model.max_tokens")


@dataclass
class Policy:
    """The resolved asking policy of one step."""

    parse_retries: int
    on_truncated: Truncated
    token_retries: int

    @classmethod
    def of(cls, config: JudgeConfig, method: str) -> Policy:
        retries, truncated = DEFAULTS[method]
        if config.on_parse_error == "missing":
            retries = 0
        elif config.max_parse_retries is not None:
            retries = config.max_parse_retries
        elif config.on_parse_error == "retry" and retries == 0:
            retries = 5
        return cls(retries, config.on_truncated or truncated, config.max_token_retries)


@dataclass
class Asked:
    """One question to the model, re-asks included."""

    parsed: Parsed[Any] | None = None
    text: str | None = None
    error: str | None = None
    truncated: bool = False
    traces: list[dict[str, Any]] = field(default_factory=list)


def cut_short(res: CallResult) -> bool:
    """The reply stopped at ``max_tokens`` before its answer ended (an end-of-turn token in the
    text means the answer ended before the cut)."""
    return res.finish_reason == "length" and not _SPECIAL.search(res.text or "")


# values for the variables a step fills in itself, so that preflight renders every template
_PREFLIGHT_VARS = {"error_category": "accuracy/mistranslation", "error_span": "x", "translation_a": "a",
                   "translation_b": "b", "analysis": "Major errors:"}


def nonempty(text: str) -> Parsed[str]:
    return Parsed(text) if text.strip() else Parsed(None, reason="empty reply")


class Judge(Step):
    """Shared plumbing: the model, template variables, and asking with a parse policy."""

    config: JudgeConfig
    method: str = "gemba_mqm"

    @property
    def needs_reference(self) -> bool:
        """Both judge configs have ``reference``: the row must then carry one."""
        return bool(getattr(self.config, "reference", False))

    def parser(self, kind: str) -> Callable[[str], Parsed[Any]]:
        return PARSERS[(kind, self.config.parse)]

    def prepare(self) -> None:
        self.templates: dict[str, PromptTemplate] = {n: get_template(n) for n in self.template_names()}
        self.policy = Policy.of(self.config, self.method)
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
        p = Policy.of(self.config, self.method)
        return {"templates": {n: get_template(n).sha256 for n in self.template_names()},
                **self.config.model_dump(),
                "policy": {"parse_retries": p.parse_retries, "on_truncated": p.on_truncated}}

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

    async def _ask(self, label: str, messages: list[Message], parse: Callable[[str], Parsed[Any]]) -> Asked:
        """Ask, then re-ask as the policy says: 0.1 warmer after a parse failure (as GEMBA), with
        200 more tokens after a reply cut at ``max_tokens`` (as GEMBA), never beyond the limits."""
        runtime, policy = self.runtime, self.policy
        base = runtime.params.temperature if self.config.temperature is None else self.config.temperature
        max_tokens = self.config.max_tokens or runtime.params.max_tokens
        out = Asked()
        attempt = more = 0
        while True:
            temperature = round(base + 0.1 * attempt, 2)
            res = await runtime.chat(messages, temperature=temperature, max_tokens=max_tokens)
            trace: dict[str, Any] = {"call": label, "temperature": temperature, "max_tokens": max_tokens,
                                     **res.trace()}
            out.traces.append(trace)
            if not res.ok or res.text is None:
                out.error = f"{label}: {res.error or 'no text'}"
                return out
            out.text, out.truncated = res.text, cut_short(res)
            if out.truncated and policy.on_truncated != "accept":
                trace.update(parse_status="truncated", raw=res.text)
                if policy.on_truncated == "more_tokens" and more < policy.token_retries:
                    more, max_tokens = more + 1, max_tokens + TOKEN_STEP
                    continue
                out.parsed = Parsed(None, reason=f"the reply was cut at max_tokens={max_tokens} "
                                                 f"(finish_reason=length); raise max_tokens")
                return out
            out.parsed = parse(res.text)
            trace["parse_status"] = out.parsed.status
            if out.truncated:
                trace["truncated"] = True
            if out.parsed.ok:
                return out
            trace.update(parse_error=out.parsed.reason, raw=res.text)  # keep what failed to parse
            if attempt >= policy.parse_retries:
                return out
            attempt += 1

    async def run(self, row: Row) -> dict[str, Any]:
        if not getattr(self, "_prepared", False):
            self.prepare()
        v, problem = self._variables(row)
        if problem:
            return {"value": None, "error": problem}
        return await self.judge(v)

    async def judge(self, v: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def finish(out: dict[str, Any], asked: Asked) -> dict[str, Any] | None:
    """Fill raw/parse fields from ``asked``; return the final output when it ends the step."""
    out.setdefault("calls", []).extend(asked.traces)
    out.setdefault("raw", asked.text)
    if asked.truncated:
        out["truncated"] = True
    if asked.parsed is not None and asked.parsed.notes:
        out.setdefault("parse_notes", []).extend(asked.parsed.notes)
    if asked.error:
        return {**out, "value": None, "error": asked.error}
    assert asked.parsed is not None
    if not asked.parsed.ok:
        return {**out, "value": None, "parse_status": "failed", "parse_error": asked.parsed.reason}
    return None


__all__ = ["Asked", "DEFAULTS", "Judge", "JudgeConfig", "PARSERS", "Policy", "cut_short", "finish", "nonempty"]

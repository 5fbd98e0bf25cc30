"""``dialogue``: generate every bot turn of a multi-session dialogue episode (MSC), with one of
three systems, for the recursive-summary memory evaluation (Wang et al. 2023):

- ``none``: the current session's context only;
- ``full``: every previous session plus the current context, truncated (oldest first) to
  ``context_tokens``;
- ``memory``: a memory built from the previous sessions, one ``rsum-update`` per finished
  session (the paper's protocol), then each reply from (memory + current context).

All three answer with the same ``rsum-respond`` template (memory "none" without memory), so they
differ only in what they remember. ``system: gold`` emits the gold bot turns (no model call),
for ``scoring.reference``. The value is one turn per line, which the dialogue metrics pair up.
Calls go through the run's :class:`ModelRuntime`; a rerun is answered from the cache.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field

from ...errors import PromptweaveError
from ...memory.budget import Budget
from ...memory.prompts import clean_reply, fit_context, render_respond
from ...memory.updater import Summarizer, UpdateFailure
from ...prompts import PromptTemplate, get_template
from .base import Row, Step, StepConfig

System = Literal["row", "none", "full", "memory", "gold"]


class DialogueConfig(StepConfig):
    episode: str = Field("source", description="row field with the episode (an object or its JSON text)")
    system: System = Field("row", description="none | full | memory | gold, or row: read system_field")
    system_field: str = "system"
    update_template: str = "rsum-update"
    respond_template: str = "rsum-respond"
    update_model: str | None = Field(None, description="named model for memory updates (default: the step's)")
    max_sentences: int = Field(20, ge=1, description="memory budget in sentences (the paper: 20)")
    compress_tries: int = Field(1, ge=0)
    context_tokens: int = Field(1500, ge=16, description="approx. tokens of dialogue a reply prompt may hold")
    max_turns: int | None = Field(None, ge=1, description="generate only the first N bot turns of the session")
    reply_max_tokens: int | None = Field(64, ge=1)
    update_max_tokens: int | None = Field(256, ge=1)


def _turns(episode: dict[str, Any]) -> tuple[list[list[tuple[str, str]]], list[tuple[str, str]]]:
    """(previous sessions, current session) as (role, text) turns; Speaker 1 is the user, Speaker 2
    the bot (previous sessions alternate, the user first, as in the Rsum data loader)."""
    def turns(value: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str)
                                                  for t in value):
            raise PromptweaveError(f"dialogue: the episode is not MSC-shaped: '{where}' must be a list of "
                                   "{text, id} turns")
        return value

    sessions = episode.get("previous_dialogs") or []
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise PromptweaveError("dialogue: the episode is not MSC-shaped: 'previous_dialogs' must be a list of sessions")
    previous = [[("user" if i % 2 == 0 else "assistant", t["text"])
                 for i, t in enumerate(turns(s.get("dialog"), f"previous_dialogs[{n}].dialog"))]
                for n, s in enumerate(sessions)]
    current = [("assistant" if t.get("id") == "Speaker 2" else "user", t["text"])
               for t in turns(episode.get("dialog"), "dialog")]
    return previous, current


def episode_of(row: Row, field: str) -> dict[str, Any]:
    """The MSC episode in a row field (an object, or its JSON text as ``data.files`` reads it)."""
    raw = row.fields.get(field)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PromptweaveError(f"dialogue: field '{field}' is not a JSON episode ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise PromptweaveError(f"dialogue: field '{field}' must hold an MSC episode object")
    return raw


def _one_line(text: str) -> str:
    return " ".join(text.split())


class DialogueStep(Step):
    Config = DialogueConfig
    config: DialogueConfig

    def prepare(self) -> None:
        self.respond_tpl: PromptTemplate = get_template(self.config.respond_template, self.ctx.base_dir)
        self.update_tpl: PromptTemplate = get_template(self.config.update_template, self.ctx.base_dir)

    def describe(self) -> dict[str, Any]:
        return {"respond_template_sha256": self.respond_tpl.sha256, "update_template_sha256": self.update_tpl.sha256}

    def _episode(self, row: Row) -> dict[str, Any]:
        return episode_of(row, self.config.episode)

    def _system(self, row: Row) -> str:
        system = self.config.system
        if system == "row":
            system = str(row.fields.get(self.config.system_field))
        if system not in {"none", "full", "memory", "gold"}:
            raise PromptweaveError(f"dialogue: system '{system}' is not none, full, memory or gold")
        return system

    def preflight(self, row: Row) -> None:
        previous, current = _turns(self._episode(row))
        self._system(row)
        render_respond(self.respond_tpl, None, current[:1])

    def _bot_turns(self, current: list[tuple[str, str]]) -> list[int]:
        idx = [i for i, (role, _) in enumerate(current) if role == "assistant"]
        return idx[: self.config.max_turns] if self.config.max_turns else idx

    async def run(self, row: Row) -> dict[str, Any]:
        system = self._system(row)
        previous, current = _turns(self._episode(row))
        targets = self._bot_turns(current)
        if system == "gold":
            return {"value": "\n".join(_one_line(current[i][1]) for i in targets)}
        memory: str | None = None
        out: dict[str, Any] = {}
        if system == "memory":
            memory, updates, err = await self._build_memory(previous)
            out["memory_updates"] = updates
            if err:
                return {"value": None, "error": err, **out}
            out["memory"] = memory
        runtime = self.ctx.model()
        hyps, calls = [], []
        for i in targets:
            context = list(current[:i])
            if system == "full":
                context = [t for s in previous for t in s] + context
            context = fit_context(context, self.config.context_tokens)
            res = await runtime.chat(render_respond(self.respond_tpl, memory, context),
                                     max_tokens=self.config.reply_max_tokens)
            calls.append(res.trace())
            if not res.ok or res.text is None:
                return {"value": None, "error": f"turn {i}: {res.error}", "calls": calls, **out}
            hyps.append(_one_line(clean_reply(res.text, self.respond_tpl.meta.get("reply_marker"))) or "-")
        return {"value": "\n".join(hyps), "system": system, "turn_index": targets, "calls": calls, **out}

    async def _build_memory(self, previous: list[list[tuple[str, str]]]) -> tuple[str | None, list[dict[str, Any]], str | None]:
        """One update per finished previous session, in order; each update's text is recorded."""
        runtime = self.ctx.model(self.config.update_model)
        summarize = Summarizer(runtime, self.update_tpl, Budget(self.config.max_sentences),
                               self.config.compress_tries, self.config.update_max_tokens)
        memory: str | None = None
        updates: list[dict[str, Any]] = []
        for n, session in enumerate(previous, 1):
            result = await summarize(memory, session)
            if isinstance(result, UpdateFailure):
                updates.append({"session": n, "error": result.error, "raw": result.raw})
                return None, updates, f"memory update after session {n}: {result.error}"
            memory, cut, note = result
            updates.append({"session": n, "memory": memory, "cut": cut, "note": note})
        return memory, updates, None


_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def parse_double_bracket(text: str, low: float = 1, high: float = 100) -> float | None:
    """The one ``[[N]]`` rating of a judge reply, within [low, high]; None (a parse failure) when
    there is none, several different ones, or one out of range."""
    found = {float(m) for m in _RATING.findall(text)}
    if len(found) != 1:
        return None
    value = found.pop()
    return value if low <= value <= high else None


class DialogueJudgeConfig(StepConfig):
    of: str = Field("reply", description="id of the dialogue step whose responses are judged")
    episode: str = "source"
    aspect: Literal["consistency", "coherence", "fluency"] = "consistency"
    template: str = "rsum-judge"
    max_tokens: int | None = Field(256, ge=1)


class DialogueJudgeStep(Step):
    """``dialogue_judge``: rate each response of a ``dialogue`` step from 1 to 100 on one aspect
    (the paper's LLM evaluation); the value is the episode's mean over the parsed ratings, so the
    report shows it per system. Unparsable replies are kept raw and counted, never scored."""

    Config = DialogueJudgeConfig
    config: DialogueJudgeConfig

    def prepare(self) -> None:
        self.template = get_template(self.config.template, self.ctx.base_dir)

    def describe(self) -> dict[str, Any]:
        return {"template": self.template.name, "template_sha256": self.template.sha256, "aspect": self.config.aspect}

    def _vars(self, episode: dict[str, Any], context: list[tuple[str, str]], response: str) -> dict[str, Any]:
        personas = episode.get("personas") or [[], []]
        bot = personas[1] if isinstance(personas, list) and len(personas) > 1 else []
        return {"aspect": self.config.aspect, "persona": [str(p) for p in bot],
                "turns": [{"role": r, "content": c} for r, c in context], "response": response}

    def preflight(self, row: Row) -> None:
        self.template.render(self._vars({}, [("user", "hi")], "hello"))

    async def run(self, row: Row) -> dict[str, Any]:
        produced = row.outputs.get(self.config.of) or {}
        if produced.get("value") is None or not isinstance(produced.get("turn_index"), list):
            return {"value": None, "error": f"step '{self.config.of}' produced no dialogue responses to judge"}
        episode = episode_of(row, self.config.episode)
        _, current = _turns(episode)
        responses = str(produced["value"]).split("\n")
        scores: list[float | None] = []
        raws: list[str | None] = []
        for i, response in zip(produced["turn_index"], responses):
            res = await self.ctx.model().chat(self.template.render(self._vars(episode, current[:i], response)),
                                              max_tokens=self.config.max_tokens)
            raws.append(res.text)
            scores.append(parse_double_bracket(res.text) if res.ok and res.text else None)
        valid = [s for s in scores if s is not None]
        status = "ok" if len(valid) == len(scores) else "failed" if not valid else "partial"
        return {"value": sum(valid) / len(valid) if valid else None, "scores": scores, "raw": raws,
                "parse_status": status, "parse_failures": len(scores) - len(valid)}


class MemoryOverlapConfig(StepConfig):
    of: str = Field("reply", description="id of the dialogue step whose memory is scored")
    episode: str = "source"
    measure: Literal["recall", "precision", "f1"] = "recall"
    threshold: float = Field(0.5, gt=0, le=1, description="unigram F1 at which two sentences match")


class MemoryOverlapStep(Step):
    """``memory_overlap``: the memory against the gold persona summaries of the previous sessions
    (MSC ``previous_dialogs[*].personas``, both speakers). A gold fact is recalled, and a memory
    sentence is precise, when some sentence of the other side reaches ``threshold`` unigram F1
    (SQuAD normalisation). Rows without a memory (other systems) get no value."""

    Config = MemoryOverlapConfig
    config: MemoryOverlapConfig

    async def run(self, row: Row) -> dict[str, Any]:
        from ...evaluators.dialogue import unigram_f1
        from ...memory.budget import sentences

        memory = (row.outputs.get(self.config.of) or {}).get("memory")
        if not isinstance(memory, str):
            return {"value": None, "note": "no memory on this row"}
        episode = episode_of(row, self.config.episode)
        gold = [str(f) for s in episode.get("previous_dialogs") or [] if isinstance(s, dict)
                for speaker in s.get("personas") or [] if isinstance(speaker, list) for f in speaker]
        mem = sentences(memory)
        if not gold or not mem:
            return {"value": None, "note": "no gold persona facts or an empty memory"}
        t = self.config.threshold
        recall = sum(1 for g in gold if max(unigram_f1(m, g) for m in mem) >= t) / len(gold)
        precision = sum(1 for m in mem if max(unigram_f1(m, g) for g in gold) >= t) / len(mem)
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        value = {"recall": recall, "precision": precision, "f1": f1}[self.config.measure]
        return {"value": 100 * value, "recall": recall, "precision": precision, "gold_facts": len(gold),
                "memory_sentences": len(mem)}

"""Judge steps through a real ModelRuntime over scripted backends."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from promptweave.errors import TemplateError
from promptweave.evaluators import MetricResult, metrics
from promptweave.evaluators.mqm import MQM_APE
from promptweave.models.base import BaseChatModel, Completion, GenParams, Message
from promptweave.models.runtime import ModelRuntime
from promptweave.models.scripted import ScriptedModel
from promptweave.models.spec import ModelConfig
from promptweave.pipelines.steps.base import Row, RunContext
from promptweave.pipelines.steps.judges import DAStep, MQMStep

SOURCE, HYP, REF = "The house is good.", "Das Haus ist gut.", "Das Haus ist schön."
GEMBA_REPLY = ('Critical:\nno-error\nMajor:\naccuracy/mistranslation - "Haus"\n'
               'Minor:\nfluency/grammar - "ist"\nstyle/awkward - "gut"')
# MQM-APE: the verifier rules come first (their prompts also quote the translation)
APE_RULES = [
    # error 1 (major "Haus"): the post-edit wins in both orders -> keep 1
    {"match": r'translation A: "Das Gebäude ist gut\."', "reply": "A is better."},
    {"match": r'translation B: "Das Gebäude ist gut\."', "reply": "**B**"},
    # error 2 (minor "ist"): the original wins in both orders -> drop (0)
    {"match": r'translation A: "Das Haus sei gut\."', "reply": "B"},
    {"match": r'translation B: "Das Haus sei gut\."', "reply": "Translation A"},
    # error 3 (minor "gut"): always "A" -> position bias, a tie (0.5)
    {"match": r'translation B: "Das Haus ist prima\."', "reply": "A"},
    {"match": r'translation A: "Das Haus ist prima\."', "reply": "答案：A"},
    {"match": r'error: "accuracy/mistranslation - Haus"', "reply": "Corrected Translation: Das Gebäude ist gut."},
    {"match": r'error: "fluency/grammar - ist"', "reply": 'Corrected Translation: "Das Haus sei gut."'},
    {"match": r'error: "style/awkward - gut"', "reply": "Das Haus ist prima."},
    {"match": r"triple backticks", "reply": GEMBA_REPLY},
]


def make(step_cls: type, rules: list[dict[str, str]] | None = None, backend: Any = None, delay: float = 0.0,
         max_retries: int = 5, **cfg: Any) -> tuple[Any, Any]:
    model = backend or ScriptedModel(rules=rules or [], default="I am not sure.", delay=delay)
    rt = ModelRuntime(ModelConfig(backend="scripted", max_concurrency=64, max_retries=max_retries,
                                  backoff_base=0.0), model)
    ctx = RunContext(models={"default": rt}, src_lang=cfg.pop("src_lang", "en"), tgt_lang=cfg.pop("tgt_lang", "de"))
    step = step_cls("judge", step_cls.Config(**cfg), ctx)
    step.prepare()
    return step, model


def row(**fields: Any) -> Row:
    return Row(index=0, key="0", fields={"source": SOURCE, "translation": HYP, "reference": REF, **fields})


class Sequence(BaseChatModel):
    """Answers with the given replies in order and records each call's temperature."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.temperatures, self.max_tokens = list(replies), [], []
        self.identity = {"backend": "sequence"}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.temperatures.append(params.temperature)
        self.max_tokens.append(params.max_tokens)
        return Completion(text=self.replies.pop(0))


# ---------------------------------------------------------------- GEMBA-MQM

async def test_gemba_mqm_scores_and_keeps_everything():
    step, model = make(MQMStep, [{"match": "triple backticks", "reply": GEMBA_REPLY}])
    out = await step.run(row())
    assert out["value"] == -7.0 and out["parse_status"] == "ok" and "error" not in out
    assert [(e["severity"], e["span"]) for e in out["errors"]] == [("major", "Haus"), ("minor", "ist"), ("minor", "gut")]
    assert out["raw"] == GEMBA_REPLY and len(out["calls"]) == 1
    (messages,) = model.calls
    assert [m.role for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert "English source:\n```The house is good.```\nGerman translation:\n```Das Haus ist gut.```" in messages[-1].content


async def test_parse_failure_retries_with_rising_temperature_then_succeeds():
    backend = Sequence(["I think it is fine.", "Here you go: it is good", GEMBA_REPLY])
    step, _ = make(MQMStep, backend=backend, max_parse_retries=3)
    out = await step.run(row())
    assert backend.temperatures == [0.0, 0.1, 0.2]
    assert out["value"] == -7.0 and out["parse_status"] == "ok"
    assert [c["parse_status"] for c in out["calls"]] == ["failed", "failed", "ok"]
    assert out["calls"][0]["raw"] == "I think it is fine."  # failed attempts keep their text


async def test_parse_failure_after_retries_is_missing_not_zero():
    step, model = make(MQMStep, [], max_parse_retries=2)
    out = await step.run(row())
    assert out["value"] is None and out["parse_status"] == "failed" and "error" not in out
    assert out["raw"] == "I am not sure." and out["parse_error"]
    assert [c["temperature"] for c in out["calls"]] == [0.0, 0.1, 0.2] and len(model.calls) == 3


async def test_on_parse_error_missing_does_not_retry():
    step, model = make(MQMStep, [], on_parse_error="missing")
    out = await step.run(row())
    assert out["value"] is None and out["parse_status"] == "failed" and len(model.calls) == 1


async def test_failed_call_is_an_error_not_a_score():
    backend = ScriptedModel(rules=[{"match": ".", "reply": GEMBA_REPLY}], fail_first=100)
    step, _ = make(MQMStep, backend=backend, max_retries=1)
    out = await step.run(row())
    assert out["value"] is None and "scripted failure" in out["error"]
    assert out["calls"][0]["error"]


async def test_translation_from_an_earlier_step():
    step, model = make(MQMStep, [{"match": "triple backticks", "reply": "Critical:\nno-error"}], translation="hyp")
    r = row()
    r.outputs["hyp"] = {"value": "Ein Haus."}
    out = await step.run(r)
    assert out["value"] == 0.0 and "```Ein Haus.```" in model.calls[0][-1].content


@pytest.mark.parametrize("fields, outputs, needle", [
    ({}, {"hyp": {"value": None, "error": "boom"}}, "did that step fail"),
    ({}, {}, "'hyp' is not a field"),
])
async def test_missing_translation_is_a_row_error(fields, outputs, needle):
    step, model = make(MQMStep, [], translation="hyp")
    r = row(**fields)
    r.outputs.update(outputs)
    out = await step.run(r)
    assert out["value"] is None and needle in out["error"] and not model.calls


async def test_unknown_languages_are_a_row_error():
    step, _ = make(MQMStep, [], src_lang=None, tgt_lang=None)
    out = await step.run(row())
    assert "src_lang_name" in out["error"]


async def test_temperature_and_max_tokens_overrides():
    backend = Sequence(["no idea", GEMBA_REPLY])
    step, _ = make(MQMStep, backend=backend, temperature=0.3, max_tokens=900, max_parse_retries=1)
    out = await step.run(row())
    assert backend.temperatures == [0.3, 0.4] and backend.max_tokens == [900, 900] and out["value"] == -7.0


@pytest.mark.parametrize("cfg", [{"method": "gemba_mqm"}, {"method": "mqm_ape"}, {"method": "eaprompt"},
                                 {"method": "eaprompt", "two_step": False, "reference": True}])
def test_preflight_renders_without_calls(cfg):
    step, model = make(MQMStep, [], **cfg)
    step.preflight(row())
    assert model.calls == []


@pytest.mark.parametrize("step_cls, cfg, fields, needle", [
    (MQMStep, {"method": "eaprompt", "reference": True}, {"source": SOURCE, "translation": HYP}, "reference"),
    (DAStep, {"reference": True}, {"source": SOURCE, "translation": HYP}, "reference"),
    (MQMStep, {"src_lang": None}, {"source": SOURCE, "translation": HYP}, "src_lang_name"),
    (MQMStep, {"translation": "hyp"}, {"source": SOURCE}, "'hyp'"),
])
def test_preflight_stops_on_missing_inputs(step_cls, cfg, fields, needle):
    step, _ = make(step_cls, [], **cfg)
    with pytest.raises(TemplateError, match=needle):
        step.preflight(Row(index=0, key="0", fields=fields))


@pytest.mark.parametrize("cfg, message", [
    ({"method": "gemba_mqm", "variant": "detailed"}, "'variant' is an option of method eaprompt"),
    ({"method": "eaprompt", "verifier": "cometkiwi"}, "'verifier' is an option of method mqm_ape"),
    ({"method": "gemba_mqm", "reference": True}, "reference-free"),
    ({"method": "eaprompt", "variant": "detailed", "count": "regex"}, "itemized"),
    ({"method": "mqm_ape", "temprature": 0.5}, "Extra inputs are not permitted"),
    ({"method": "gemba", }, "gemba_mqm"),
])
def test_config_validation(cfg, message):
    with pytest.raises(ValidationError, match=message):
        MQMStep.Config(**cfg)


# ---------------------------------------------------------------- EAPrompt

EA_ANALYSIS = 'Major errors:\n(1) “Haus” – Mistranslation\nMinor errors:\n(1) “ist” – Grammar\n(2) “gut” – Awkward Style'


@pytest.mark.parametrize("w_major, expected", [(5.0, -7.0), (10.0, -12.0)])
async def test_eaprompt_two_step(w_major, expected):
    step, model = make(MQMStep, [{"match": "Output 2 numbers ONLY", "reply": "1, 2"},
                                 {"match": "identify the major and minor errors", "reply": EA_ANALYSIS}],
                       method="eaprompt", w_major=w_major)
    out = await step.run(row())
    assert out["value"] == expected and out["counts"] == {"major": 1, "minor": 2}
    assert out["raw"] == EA_ANALYSIS and out["raw_count"] == "1, 2" and out["count_source"] == "llm"
    first, second = model.calls
    assert [m.role for m in first] == ["user", "assistant", "user"] and "Reference:" not in first[-1].content
    assert len(second) == 1 and second[0].content.startswith(EA_ANALYSIS + "\n\nBased on the above error")
    assert len(out["errors"]) == 3 and out["demo"] == "en-de"


async def test_eaprompt_regex_count_needs_one_call():
    step, model = make(MQMStep, [{"match": "identify", "reply": EA_ANALYSIS}], method="eaprompt", count="regex")
    out = await step.run(row())
    assert out["value"] == -7.0 and out["count_source"] == "regex" and len(model.calls) == 1


async def test_eaprompt_one_step_reads_the_trailing_counts():
    step, model = make(MQMStep, [{"match": "Output 2 numbers ONLY", "reply": EA_ANALYSIS + "\n1, 2"}],
                       method="eaprompt", two_step=False)
    out = await step.run(row())
    assert out["value"] == -7.0 and len(model.calls) == 1
    assert model.calls[0][1].content.endswith("\n2, 5")  # the en-de demonstration's counts


async def test_eaprompt_reference_and_detailed_variant():
    step, model = make(MQMStep, [{"match": "Output 2", "reply": "0, 1"}, {"match": "identify", "reply": "Fine."}],
                       method="eaprompt", reference=True, variant="detailed")
    out = await step.run(row())
    assert out["value"] == -1.0
    demo_turn, answer, test_turn = (m.content for m in model.calls[0])
    assert f"Reference: {REF}" in test_turn and "Reference: Sie seien" in demo_turn
    assert answer.startswith("I think the mistranslation of")
    missing = await step.run(Row(index=1, key="1", fields={"source": SOURCE, "translation": HYP}))
    assert "reference" in missing["error"]


async def test_eaprompt_bad_count_is_missing():
    step, _ = make(MQMStep, [{"match": "Output 2", "reply": "Many."}, {"match": "identify", "reply": EA_ANALYSIS}],
                   method="eaprompt", max_parse_retries=1)
    out = await step.run(row())
    assert out["value"] is None and out["parse_status"] == "failed" and out["raw"] == EA_ANALYSIS


@pytest.mark.parametrize("src, tgt, demo", [
    ("en", "de", "en-de"), ("en", "ru", "en-ru"), ("zh", "en", "zh-en"), ("de", "en", "zh-en"),
    ("en", "fr", "en-de"), ("zh-Hans", "en-US", "zh-en"),
])
async def test_eaprompt_demo_per_language_pair(src, tgt, demo):
    step, _ = make(MQMStep, [{"match": "Output 2", "reply": "0, 0"}, {"match": "identify", "reply": "None."}],
                   method="eaprompt", src_lang=src, tgt_lang=tgt)
    out = await step.run(row())
    assert out["demo"] == demo and out["value"] == 0.0


# ---------------------------------------------------------------- MQM-APE

async def test_mqm_ape_keeps_drops_and_ties():
    step, model = make(MQMStep, APE_RULES, method="mqm_ape")
    out = await step.run(row())
    assert [r["keep"] for r in out["errors"]] == [1.0, 0.0, 0.5]
    assert out["value"] == -5.5                 # -(5*1 + 1*0 + 1*0.5)
    assert out["value_unverified"] == -7.0      # -(5 + 1 + 1)
    assert out["post_edits"] == ["Das Gebäude ist gut.", "Das Haus sei gut.", "Das Haus ist prima."]
    assert out["ape"] == "Das Gebäude ist gut."
    assert [[v["winner"] for v in votes] for votes in out["votes"]] == [
        ["post_edit", "post_edit"], ["original", "original"], ["original", "post_edit"]]
    assert out["parse_status"] == "ok" and len(out["calls"]) == 10 == len(model.calls)
    assert [c["call"] for c in out["calls"]][:4] == ["evaluator", "post_edit[0]", "verify[0].1", "verify[0].2"]


async def test_mqm_ape_per_error_calls_run_concurrently():
    step, model = make(MQMStep, APE_RULES, delay=0.2, method="mqm_ape")
    start = time.perf_counter()
    out = await step.run(row())
    elapsed = time.perf_counter() - start
    assert len(model.calls) == 10  # 1 evaluator + 3 post-edits + 6 verifier calls
    # three rounds (evaluate, post-edit, verify) of 0.2 s, not ten calls one after another (2 s)
    assert elapsed < 1.0, elapsed
    assert out["value"] == -5.5


async def test_mqm_ape_unreadable_verdict_counts_half():
    rules = [{"match": r"translation A:", "reply": "Both are equally good."}] + APE_RULES[6:]
    step, _ = make(MQMStep, rules, method="mqm_ape", max_parse_retries=1)
    out = await step.run(row())
    assert [r["keep"] for r in out["errors"]] == [0.5, 0.5, 0.5] and out["value"] == -3.5
    assert out["parse_status"] == "partial" and out["errors"][0]["status"] == "verdict_failed"
    assert out["ape"] == HYP  # no post-edit beat the original outright


async def test_mqm_ape_no_errors():
    step, model = make(MQMStep, [{"match": "triple backticks", "reply": "Critical:\nno-error\nMajor:\nno-error"}],
                       method="mqm_ape")
    out = await step.run(row())
    assert out["value"] == 0.0 and out["errors"] == [] and out["ape"] == HYP and len(model.calls) == 1


async def test_mqm_ape_keeps_every_error_line_and_reports_dropped():
    reply = "Errors found:\n" + "".join(f'Minor:\nfluency/grammar - "w{i}"\n' for i in range(7))
    rules = [{"match": "post-edit", "reply": "Corrected Translation: X."}, {"match": "translation A", "reply": "B"},
             {"match": "triple backticks", "reply": reply}]
    step, _ = make(MQMStep, rules, method="mqm_ape")
    out = await step.run(row())
    assert len(out["errors"]) == 7 and out["dropped"] == ["Errors found:"]
    assert out["value"] == -3.5  # 7 ties of 0.5, no 5-error cap


async def test_mqm_ape_failed_sub_call_fails_the_row():
    class FailVerifier(ScriptedModel):
        async def complete(self, messages: list[Message], params: GenParams) -> Completion:
            if "translation A" in messages[-1].content:
                from promptweave.models.base import BackendError
                raise BackendError("verifier down", retryable=False)
            return await super().complete(messages, params)

    step, _ = make(MQMStep, backend=FailVerifier(rules=APE_RULES), method="mqm_ape")
    out = await step.run(row())
    assert out["value"] is None and "verifier down" in out["error"]
    assert out["post_edits"][0] == "Das Gebäude ist gut."  # intermediates are kept


class FakeKiwi:
    """Stands in for the 'comet' metric: scores by a table of hypotheses."""

    table = {HYP: 0.80, "Das Gebäude ist gut.": 0.90, "Das Haus sei gut.": 0.70, "Das Haus ist prima.": 0.81}

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        self.options = options

    def score(self, hypotheses: list[str], references: list[str] | None = None,
              sources: list[str] | None = None) -> MetricResult:
        assert references is None and sources == [SOURCE] * len(hypotheses)
        return MetricResult("comet", None, [self.table[h] for h in hypotheses], "fake")


async def test_mqm_ape_cometkiwi_verifier(monkeypatch):
    monkeypatch.setitem(metrics._items, "comet", FakeKiwi)
    step, model = make(MQMStep, APE_RULES, method="mqm_ape", verifier="cometkiwi", comet_model="kiwi-path")
    assert step._kiwi.options == {"model": "kiwi-path"}
    out = await step.run(row())
    # gains +0.10 (keep), -0.10 (drop), +0.01 (within 0.03: tie)
    assert [r["keep"] for r in out["errors"]] == [1.0, 0.0, 0.5] and out["value"] == -5.5
    assert len(model.calls) == 4  # no LLM verifier calls
    assert out["ape"] == "Das Gebäude ist gut."


@pytest.mark.comet
@pytest.mark.slow
async def test_mqm_ape_real_cometkiwi(tmp_path, monkeypatch):
    """The real comet path on a tiny, randomly initialised CometKiwi checkpoint built offline
    (tests/evaluators/comet_tiny.py): plumbing only, its scores mean nothing."""
    pytest.importorskip("comet")
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "evaluators"
    monkeypatch.syspath_prepend(str(here))
    import comet_tiny

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder = comet_tiny.build_encoder_dir(tmp_path / "tiny-xlmr", comet_tiny.corpus_lines(None))
    kiwi = comet_tiny.build_tiny_comet(tmp_path, "kiwi", encoder_dir=encoder).parents[1]
    step, model = make(MQMStep, APE_RULES, method="mqm_ape", verifier="cometkiwi", comet_model=str(kiwi))
    out = await step.run(row())
    assert "error" not in out and len(model.calls) == 4
    assert all(r["keep"] in (0.0, 0.5, 1.0) for r in out["errors"])
    assert all(isinstance(r["votes"][0]["cometkiwi_post_edit"], float) for r in out["errors"])
    assert out["value"] == MQM_APE.score((r["severity"], r["keep"]) for r in out["errors"])


# ---------------------------------------------------------------- GEMBA-DA

@pytest.mark.parametrize("reference, needle", [(False, "German translation:"), (True, "German human reference:")])
async def test_da(reference, needle):
    step, model = make(DAStep, [{"match": "Score the following", "reply": "Score: 87"}], reference=reference)
    out = await step.run(row())
    assert out["value"] == 87.0 and out["parse_status"] == "ok"
    assert needle in model.calls[0][0].content


async def test_da_out_of_range_retries_then_missing():
    backend = Sequence(["150", "Score: 120"])
    step, _ = make(DAStep, backend=backend, max_parse_retries=1)
    out = await step.run(row())
    assert out["value"] is None and out["parse_status"] == "failed" and out["raw"] == "Score: 120"
    assert backend.temperatures == [0.0, 0.1]


def test_describe_names_templates_and_scoring():
    step, _ = make(MQMStep, [], method="mqm_ape")
    info = step.describe()
    assert set(info["templates"]) == {"judges/gemba-mqm", "judges/mqm-ape-postedit", "judges/mqm-ape-verify"}
    assert info["scoring"]["max_penalty"] == 25.0


# ---------------------------------------------------------------- parse: reference, retries, truncation

FIXTURES = Path(__file__).resolve().parents[1] / "prompts" / "fixtures"


class Cut(BaseChatModel):
    """Replies ``(text, finish_reason)`` in order; records temperature and max_tokens per call."""

    def __init__(self, replies: list[tuple[str, str]]) -> None:
        self.replies, self.temperatures, self.max_tokens = list(replies), [], []
        self.identity = {"backend": "cut"}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.temperatures.append(params.temperature)
        self.max_tokens.append(params.max_tokens)
        text, reason = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return Completion(text=text, finish_reason=reason)


class Replay(BaseChatModel):
    """Answers each MQM-APE call with the reply the reference run recorded for it."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item, self.calls = item, 0
        want = [e for lv in ("critical", "major", "minor") for e in item["expected"]["error_dict"][lv]]
        self.post_edit = {f'"{e["category"]} - {e["span"]}"': r for e, r in zip(want, item["post_edit_replies"])}
        self.verify = {}
        for k, e in enumerate(want):
            self.verify[(item["translation"], e["post_edit"])] = item["verifier_replies"][2 * k]
            self.verify[(e["post_edit"], item["translation"])] = item["verifier_replies"][2 * k + 1]
        self.identity = {"backend": "replay"}

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.calls += 1
        last = messages[-1].content
        m = re.search(r'translation A: "(.*)"\n.* translation B: "(.*)"\nWhich', last, re.S)
        if m:
            text = self.verify[(m.group(1), m.group(2))]
        elif "post-edit" in last:
            text = next(r for key, r in self.post_edit.items() if key in last)
        else:
            text = self.item["evaluator_reply"]
        # the recorded Llama-3 replies ran on past <|eot_id|> until max_tokens
        return Completion(text=text, finish_reason="length" if "<|eot_id|>" in text else "stop")


@pytest.mark.parametrize("i", range(10))
async def test_mqm_ape_step_reproduces_the_reference_run(i):
    item = json.loads((FIXTURES / "mqm_ape_recorded.json").read_text(encoding="utf-8"))["items"][i]
    backend = Replay(item)
    step, _ = make(MQMStep, backend=backend, method="mqm_ape", parse="reference", src_lang="zh", tgt_lang="en")
    r = Row(index=0, key="0", fields={"source": item["source"], "translation": item["translation"]})
    out = await step.run(r)
    want = [{"severity": lv, **e} for lv in ("critical", "major", "minor") for e in item["expected"]["error_dict"][lv]]
    assert [(e["severity"], e["category"], e["span"]) for e in out["errors"]] == \
        [(w["severity"], w["category"], w["span"]) for w in want]
    assert out["post_edits"] == [w["post_edit"] for w in want]
    assert [e["keep"] for e in out["errors"]] == [w["pe_valid_score"] for w in want]
    assert out["value"] == item["expected"]["MQM_APE_score"] and "truncated" not in out
    assert backend.calls == 1 + 3 * len(want)  # asked once each, as the reference


async def test_gemba_mqm_defaults_never_reask_and_reference_scores_like_gemba():
    backend = Sequence(["I cannot evaluate this."])
    step, _ = make(MQMStep, backend=backend)
    out = await step.run(row())
    assert out["value"] is None and out["parse_status"] == "failed" and len(backend.temperatures) == 1
    step, _ = make(MQMStep, backend=Sequence(["I cannot evaluate this."]), parse="reference")
    out = await step.run(row())
    assert out["value"] == 0.0 and out["parse"] == "reference" and "scores this reply 0" in out["parse_notes"][0]


async def test_gemba_da_reasks_up_to_temperature_one():
    backend = Sequence(["85.5"] * 11)
    step, _ = make(DAStep, backend=backend, parse="reference")
    out = await step.run(row())
    assert backend.temperatures == [round(0.1 * k, 1) for k in range(11)] and out["value"] is None
    backend = Sequence(["85.5", "-5"])
    step, _ = make(DAStep, backend=backend, parse="reference")
    assert (await step.run(row()))["value"] == 5.0 and backend.temperatures == [0.0, 0.1]


@pytest.mark.parametrize("cfg", [{"method": "eaprompt", "count": "regex"}, {"method": "mqm_ape"}])
async def test_eaprompt_and_mqm_ape_ask_once(cfg):
    backend = Sequence(["nothing useful"] * 6)
    step, _ = make(MQMStep, backend=backend, **cfg)
    out = await step.run(row())
    assert out["parse_status"] == "failed" and len(backend.temperatures) == 1
    backend = Sequence(["nothing useful"] * 6)
    step, _ = make(MQMStep, backend=backend, on_parse_error="retry", **cfg)
    await step.run(row())
    assert backend.temperatures == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # configurable: 5 retries


async def test_gemba_cut_reply_is_asked_again_with_200_more_tokens():
    backend = Cut([("Critical:\nno-error\nMajor:\naccuracy/mis", "length"), (GEMBA_REPLY, "stop")])
    step, _ = make(MQMStep, backend=backend, max_tokens=300)
    out = await step.run(row())
    assert backend.max_tokens == [300, 500] and out["value"] == -7.0
    assert [c["parse_status"] for c in out["calls"]] == ["truncated", "ok"]


async def test_cut_reply_fails_after_the_token_retries():
    backend = Cut([("Critical:\nno-error\nMajor:\naccuracy/mis", "length")])
    step, _ = make(MQMStep, backend=backend, max_tokens=100, max_token_retries=2)
    out = await step.run(row())
    assert backend.max_tokens == [100, 300, 500]
    assert out["value"] is None and out["parse_status"] == "failed" and "max_tokens=500" in out["parse_error"]


async def test_mqm_ape_cut_reply_is_a_parse_failure_or_accepted_when_asked():
    cut = ('Critical:\nno-error\nMajor:\naccuracy/mistranslation - "Haus"\nMinor:\nfluency/gra', "length")
    backend = Cut([cut])
    step, _ = make(MQMStep, backend=backend, method="mqm_ape")
    out = await step.run(row())
    assert out["parse_status"] == "failed" and "finish_reason=length" in out["parse_error"]
    assert len(backend.max_tokens) == 1 and out["raw"] == cut[0]
    backend = Cut([cut, ("Corrected Translation: Das Gebäude ist gut.", "stop"), ("B", "stop"), ("A", "stop")])
    step, _ = make(MQMStep, backend=backend, method="mqm_ape", parse="reference", on_truncated="accept")
    out = await step.run(row())
    assert out["truncated"] is True and out["value"] == -5.0 and out["calls"][0]["truncated"] is True


async def test_reply_that_ended_before_the_cut_is_complete():
    backend = Cut([(GEMBA_REPLY + "<|eot_id|>assistant\n\nMore chatter that ran to the lim", "length")])
    step, _ = make(MQMStep, backend=backend)
    out = await step.run(row())
    assert out["value"] == -7.0 and len(backend.max_tokens) == 1 and "truncated" not in out


async def test_empty_post_edit_is_verified_as_the_reference_does():
    rules = [{"match": r'translation A: ""', "reply": "B"}, {"match": r'translation B: ""', "reply": "A"},
             {"match": "post-edit", "reply": "Corrected Translation:"},
             {"match": "triple backticks", "reply": 'Major:\naccuracy/mistranslation - "Haus"'}]
    for parse in ("reference", "robust"):
        step, model = make(MQMStep, rules, method="mqm_ape", parse=parse)
        out = await step.run(row())
        assert out["errors"][0]["status"] == "post_edit_empty" and out["errors"][0]["keep"] == 0.0
        assert len(model.calls) == 4 and out["value"] == 0.0


def test_describe_shows_the_resolved_policy():
    step, _ = make(DAStep, [])
    assert step.describe()["policy"] == {"parse_retries": 10, "on_truncated": "more_tokens"}
    step, _ = make(MQMStep, [], method="mqm_ape")
    assert step.describe()["policy"] == {"parse_retries": 0, "on_truncated": "fail"}


@pytest.mark.parametrize("i", [2, 3, 4, 6, 7, 8, 9])
async def test_mqm_ape_cometkiwi_rule_reproduces_the_reference_run(i, monkeypatch):
    """The CometKiwi-verifier run of the reference (metric_verifier/results.json): its recorded
    CometKiwi scores, through our threshold rule, give its keep values and scores."""
    item = json.loads((FIXTURES / "mqm_ape_recorded.json").read_text(encoding="utf-8"))["items"][i]
    kiwi = item["expected_cometkiwi"]
    table = {item["translation"]: kiwi["translation"], **{e["post_edit"]: e["postedit_cometkiwi_score"]
                                                           for e in kiwi["errors"]}}

    class RecordedKiwi(FakeKiwi):
        def score(self, hypotheses, references=None, sources=None):
            return MetricResult("comet", None, [table[h] for h in hypotheses], "recorded")

    monkeypatch.setitem(metrics._items, "comet", RecordedKiwi)
    step, _ = make(MQMStep, backend=Replay(item), method="mqm_ape", parse="reference", verifier="cometkiwi",
                   src_lang="zh", tgt_lang="en")
    out = await step.run(Row(index=0, key="0", fields={"source": item["source"], "translation": item["translation"]}))
    assert [e["keep"] for e in out["errors"]] == [e["pe_valid_score"] for e in kiwi["errors"]]
    assert out["value"] == kiwi["MQM_APE_score"]


@pytest.mark.parametrize("count, parse, value", [
    ("0, 1", "reference", -1.0), ("Major: 0, Minor: 1", "robust", -1.0), ("Major: 0, Minor: 1", "reference", None)])
async def test_eaprompt_counts_as_the_prompt_demands(count, parse, value):
    step, model = make(MQMStep, [{"match": "Output 2", "reply": count}, {"match": "identify", "reply": EA_ANALYSIS}],
                       method="eaprompt", parse=parse)
    out = await step.run(row())
    assert out["value"] == value and len(model.calls) == 2  # asked once each, as the reference
    assert out["parse_status"] == ("ok" if value is not None else "failed")

"""The judges' built-in templates render with StrictUndefined and keep the papers' structure."""

from __future__ import annotations

import pytest

from promptweave.errors import TemplateError
from promptweave.prompts import builtin_names, get_template
from promptweave.prompts.parsers import parse_eaprompt_counts, parse_eaprompt_errors, parse_gemba_mqm

ROW = {"source": "The cat sat on the mat.", "translation": "Die Katze saß auf der Matte.",
       "reference": "Die Katze saß auf der Matte.", "src_lang_name": "English", "tgt_lang_name": "German"}
GEMBA_INSTRUCTION = "Based on the source segment and machine translation surrounded with triple backticks"


def roles(messages):
    return [m.role for m in messages]


def test_every_judge_template_is_listed_and_tested():
    judges = {n for n in builtin_names() if n.startswith("judges/")}
    assert judges == {"judges/gemba-mqm", "judges/gemba-da", "judges/gemba-da-ref", "judges/eaprompt",
                      "judges/eaprompt-count", "judges/mqm-ape-postedit", "judges/mqm-ape-verify"}


def test_gemba_mqm_renders_three_demonstrations():
    msgs = get_template("judges/gemba-mqm").render(ROW)
    assert roles(msgs) == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[0].content.startswith("You are an annotator for the quality of machine translation.")
    last = msgs[-1].content
    assert last.startswith("English source:\n```The cat sat on the mat.```\nGerman translation:\n"
                           "```Die Katze saß auf der Matte.```\n\n" + GEMBA_INSTRUCTION)
    # the instruction is the same in every user turn, and its taxonomy is complete
    instructions = {m.content.split("\n\n", 1)[1] for m in msgs if m.role == "user"}
    assert len(instructions) == 1
    for term in ("accuracy (addition, mistranslation, omission, untranslated text)",
                 "fluency (character encoding, grammar, inconsistency, punctuation, register, spelling)",
                 "style (awkward)", "terminology (inappropriate for context, inconsistent use)",
                 "non-translation, other, or no-error", "critical, major, and minor"):
        assert term in last


def test_gemba_mqm_demonstration_answers_parse():
    answers = [m.content for m in get_template("judges/gemba-mqm").render(ROW) if m.role == "assistant"]
    severities = [[e.severity for e in parse_gemba_mqm(a).value] for a in answers]
    assert severities == [["major", "major", "minor", "minor"], ["major", "major", "minor"],
                          ["critical", "major", "minor"]]


@pytest.mark.parametrize("name, needs", [
    ("judges/gemba-da", "Score the following translation from English to German on a continuous scale"),
    ("judges/gemba-da-ref", "German human reference: Die Katze saß auf der Matte.\n"),  # unquoted, as GEMBA
])
def test_gemba_da_renders(name, needs):
    (msg,) = get_template(name).render(ROW)
    assert msg.role == "user" and needs in msg.content
    assert msg.content.endswith("\nScore: ")


def test_gemba_da_ref_needs_reference():
    row = {k: v for k, v in ROW.items() if k != "reference"}
    get_template("judges/gemba-da").render(row)
    with pytest.raises(TemplateError, match="reference"):
        get_template("judges/gemba-da-ref").render(row)


@pytest.mark.parametrize("name", ["judges/gemba-mqm", "judges/gemba-da", "judges/mqm-ape-postedit",
                                  "judges/mqm-ape-verify", "judges/eaprompt", "judges/eaprompt-count"])
def test_missing_variables_are_errors(name):
    with pytest.raises(TemplateError):
        get_template(name).render({})


@pytest.mark.parametrize("pair", ["en-de", "en-ru", "zh-en"])
@pytest.mark.parametrize("use_reference", [True, False])
@pytest.mark.parametrize("single_step", [True, False])
@pytest.mark.parametrize("style", ["itemized", "detailed"])
def test_eaprompt_renders_every_variant(pair, use_reference, single_step, style):
    tpl = get_template("judges/eaprompt")
    demo = tpl.meta["demos"][pair]
    msgs = tpl.render({**ROW, "demo": demo, "use_reference": use_reference, "single_step": single_step,
                       "demo_style": style})
    assert roles(msgs) == ["user", "assistant", "user"]  # one-shot, no system turn
    demo_turn, answer, test_turn = (m.content for m in msgs)
    assert demo_turn.startswith(f"Source: {demo['source']}\n")
    assert (f"\nReference: {demo['reference']}\n" in demo_turn) is use_reference
    assert test_turn.startswith("Source: The cat sat on the mat.\n" + (
        "Reference: Die Katze saß auf der Matte.\n" if use_reference else "") + "Translation: Die Katze")
    assert ("Based on the given source and reference," in test_turn) is use_reference
    assert ('Output 2 numbers ONLY with the format: "x, x"' in test_turn) is single_step
    assert demo_turn.split("\n")[-1] == test_turn.split("\n")[-1]  # same instruction in both turns
    assert answer.startswith(demo[style])
    assert answer.endswith("\n" + demo["count"]) is single_step


@pytest.mark.parametrize("pair", ["en-de", "en-ru", "zh-en"])
def test_eaprompt_demos_agree_with_their_counts(pair):
    demo = get_template("judges/eaprompt").meta["demos"][pair]
    errors = parse_eaprompt_errors(demo["itemized"]).value
    counts = (sum(e.severity == "major" for e in errors), sum(e.severity == "minor" for e in errors))
    assert counts == parse_eaprompt_counts(demo["count"]).value


def test_eaprompt_without_reference_ignores_missing_reference():
    tpl = get_template("judges/eaprompt")
    row = {k: v for k, v in ROW.items() if k != "reference"}
    msgs = tpl.render({**row, "demo": tpl.meta["demos"]["en-de"], "use_reference": False,
                       "single_step": False, "demo_style": "itemized"})
    assert "Reference:" not in msgs[-1].content


def test_eaprompt_count_turn():
    (msg,) = get_template("judges/eaprompt-count").render({"analysis": "Major errors:\n(1) “x” – Omission"})
    assert msg.content == ("Major errors:\n(1) “x” – Omission\n\nBased on the above error information, Output 2 "
                           'numbers ONLY with the format: "x, x", indicating the number of major and minor '
                           "errors. DO NOT ADD other information!")


def test_mqm_ape_post_edit_turn():
    (msg,) = get_template("judges/mqm-ape-postedit").render(
        {**ROW, "error_category": "accuracy/mistranslation", "error_span": "Matte"})
    assert msg.content == (
        'English source: "The cat sat on the mat."\nGerman translation: "Die Katze saß auf der Matte."\n'
        'Please post-edit the translation to address the identified error: "accuracy/mistranslation - '
        'Matte". Provide only the corrected German translation after "Corrected Translation:" without '
        "adding any additional explanations or translation information.")


def test_mqm_ape_verify_turn():
    (msg,) = get_template("judges/mqm-ape-verify").render(
        {**ROW, "translation_a": "Eins.", "translation_b": "Zwei."})
    assert msg.content == (
        'English source: "The cat sat on the mat."\nEvaluate the following translations:\n'
        'German translation A: "Eins."\nGerman translation B: "Zwei."\nWhich translation is better? '
        'Please output either "A" or "B" only, without any additional explanation.\n\nAnswer:')


def test_row_text_is_data_not_template_code():
    msgs = get_template("judges/gemba-da").render({**ROW, "translation": "{{ source }} {% if 1 %}x{% endif %}"})
    assert "{{ source }} {% if 1 %}x{% endif %}" in msgs[0].content

"""Judge reply parsers: tables of realistic and broken replies, scoring presets with
hand-computed values, and property tests that no parser ever raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptweave.evaluators.mqm import EAPROMPT, GEMBA_MQM, MQM_APE, eaprompt_score, get_scoring
from promptweave.prompts.parsers import (parse_da_score, parse_eaprompt_counts, parse_eaprompt_errors,
                                         parse_gemba_mqm, parse_mqm_ape_errors, parse_post_edit,
                                         parse_verdict)

GEMBA_DEMO = 'Critical:\nno-error\nMajor:\naccuracy/mistranslation - "involvement"\naccuracy/omission - "the account holder"\nMinor:\nfluency/grammar - "wäre"\nfluency/register - "dir"\n'


def sev(parsed):  # severities of a parsed MQM reply, or None
    return None if parsed.value is None else [e.severity for e in parsed.value]


# ---------------------------------------------------------------- GEMBA-MQM

@pytest.mark.parametrize("reply, severities", [
    (GEMBA_DEMO, ["major", "major", "minor", "minor"]),
    ("Critical:\nno-error\nMajor:\nno-error\nMinor:\nno-error", []),
    ("CRITICAL:\nNon-translation - \"Das ist\"\nMAJOR:\nno-error\nMINOR:\nno-error", ["critical"]),
    # any non-translation error is critical, whatever header it is under
    ("Critical:\nno-error\nMajor:\nnon-translation - \"x\"\nMinor:\nstyle/awkward - \"y\"", ["critical", "minor"]),
    # markdown headers and bullets
    ("**Critical:**\nno-error\n**Major:**\n- accuracy/omission - \"z\"\n**Minor:**\n* fluency/spelling - \"w\"",
     ["major", "minor"]),
    ("### Major errors:\n1. accuracy/addition - “von”\n### Minor errors\n2) style/awkward - „so“", ["major", "minor"]),
    # error on the header line itself
    ("Critical: no-error\nMajor: accuracy/mistranslation - \"Bank\"\nMinor: no-error", ["major"]),
    # prose before the headers and after the list is dropped, not counted
    ("Here is my annotation:\nCritical:\nno-error\nMajor:\nterminology/inconsistent use - \"Kfz\"\n"
     "Minor:\nOverall the translation is good.", ["major"]),
    ("no-error", []),
    ("The translation is perfect, no errors.", []),
    # no headers, no no-error statement: a failure, not a perfect score
    ("The translation is mostly fine but the tone is off.", None),
    ('accuracy/mistranslation - "x"', None),
    ("", None),
    (None, None),
])
def test_gemba_mqm_table(reply, severities):
    parsed = parse_gemba_mqm(reply)
    assert sev(parsed) == severities
    assert parsed.status == ("failed" if severities is None else "ok")


def test_gemba_mqm_fields_and_dropped():
    parsed = parse_gemba_mqm("Sure!\nMajor:\naccuracy/mistranslation - \"involvement\"\nI hope this helps.")
    (err,) = parsed.value
    assert (err.category, err.span) == ("accuracy/mistranslation", "involvement")
    assert parsed.dropped == ["Sure!", "I hope this helps."]


def test_gemba_mqm_special_tokens_cut():
    parsed = parse_gemba_mqm('Critical:\nno-error\nMinor:\nstyle/awkward - "a"<|eot_id|>Major:\nother - "b"')
    assert sev(parsed) == ["minor"]


# ---------------------------------------------------------------- MQM-APE evaluator

@pytest.mark.parametrize("reply, expected, n_dropped", [
    (GEMBA_DEMO, [("major", "involvement"), ("major", "the account holder"), ("minor", "wäre"), ("minor", "dir")], 0),
    # lines before any header default to minor; every error is kept (no cap at 5)
    ('accuracy/omission - "a"\n' + "Major:\n" + "".join(f'fluency/grammar - "w{i}"\n' for i in range(7)),
     [("minor", "a")] + [("major", f"w{i}") for i in range(7)], 0),
    # non-translation is not promoted here (MQM-APE does not)
    ('Major:\nnon-translation - "whole sentence"', [("major", "whole sentence")], 0),
    # lines without "category - span" are dropped and reported
    ('Critical errors:\nThe word Bank is wrong\nMajor errors:\naccuracy/mistranslation - "Bank"', [("major", "Bank")], 1),
    ("Critical:\nno-error\nMajor:\nno-error\nMinor:\nno-error", [], 0),
    ("I could not find anything to annotate.", None, 1),
])
def test_mqm_ape_errors_table(reply, expected, n_dropped):
    parsed = parse_mqm_ape_errors(reply)
    got = None if parsed.value is None else [(e.severity, e.span) for e in parsed.value]
    assert got == expected
    assert len(parsed.dropped) == n_dropped


# ---------------------------------------------------------------- EAPrompt

EA_ZHEN = ("Major errors:\n(1) “BEIJING” – Omission\n(2) “subjects” – Mistranslation\nMinor errors:\n"
           "(1) “households of various” – Mistranslation\n(2) “festival” – Mistranslation\n"
           "(3) “supervision” – Mistranslation\n(4) “Beijing Municipal Market Supervision Bureau” – "
           "Inappropriate for context\n(5) “BEIJING” – Spelling")


@pytest.mark.parametrize("reply, counts", [
    (EA_ZHEN, (2, 5)),
    (EA_ZHEN + "\n2, 5", (2, 5)),
    ('Major errors:\n(1) "Испытайте" – Inconsistency\nMinor errors:\nNone', (1, 0)),
    ("**Major errors:**\n- \"Sie\" - Mistranslation\n**Minor errors:**\n- \"wurden\" - Grammar\n- \"sagten\" - Mistranslation",
     (1, 2)),
    ("Major errors: None\nMinor errors:\n1. “im Inneren” – Mistranslation", (0, 1)),
    ("There are no errors in this translation.", (0, 0)),
    ("I think the mistranslation of \"Sie\" should be categorized into a major error.", None),
    ("", None),
])
def test_eaprompt_errors_table(reply, counts):
    parsed = parse_eaprompt_errors(reply)
    got = None if parsed.value is None else (
        sum(e.severity == "major" for e in parsed.value), sum(e.severity == "minor" for e in parsed.value))
    assert got == counts


def test_eaprompt_item_fields():
    first = parse_eaprompt_errors(EA_ZHEN).value[0]
    assert (first.severity, first.span, first.category) == ("major", "BEIJING", "Omission")


@pytest.mark.parametrize("reply, counts", [
    ("2, 5", (2, 5)),
    ("0, 0", (0, 0)),
    ("**1, 3**", (1, 3)),
    ("Major: 2, Minor: 4", (2, 4)),
    ("Major errors: 1\nMinor errors: 0", (1, 0)),
    ("There are 3 major errors and 1 minor error.", (3, 1)),
    ("2,3.", (2, 3)),
    (EA_ZHEN + "\n2, 5", (2, 5)),              # one-step: the counts line ends the analysis
    ("(1) “more than 2,000 households” – Mistranslation\n1, 1", (1, 1)),
    ("2 and 5", (2, 5)),
    ("2", None),                               # one number
    ("2, 5, 7", None),
    ("I cannot count the errors.", None),
    ("1000, 3", None),                         # out of range
    ("", None),
])
def test_eaprompt_counts_table(reply, counts):
    parsed = parse_eaprompt_counts(reply)
    assert parsed.value == counts


# ---------------------------------------------------------------- GEMBA-DA

@pytest.mark.parametrize("reply, score", [
    ("85", 85.0),
    ("Score: 92", 92.0),
    ("0", 0.0),
    ("100", 100.0),
    ("72.5", 72.5),
    ('["100"]', 100.0),
    ("85/100", 85.0),
    ("**Score: 70 out of 100**", 70.0),
    ("I would rate this translation 65.", 65.0),
    ("101", None),
    ("-5", None),
    ("Between 80 and 90", None),
    ("Score (0-100): 85", None),               # three numbers: not exactly one
    ("The translation is good.", None),
    ("", None),
])
def test_da_table(reply, score):
    assert parse_da_score(reply).value == score


# ---------------------------------------------------------------- A/B verdicts

@pytest.mark.parametrize("reply, verdict", [
    ("A", "A"), ("B", "B"), ("b", "B"), ("B.", "B"), ("(A)", "A"), ("**B**", "B"), ('"A"', "A"),
    ("Answer: B", "B"), ('Answer: "A"', "A"), ("Translation A", "A"), ("Option B", "B"),
    ("A is better", "A"), ("A is better.", "A"), ("The better translation is B.", "B"),
    ("B is better than A.", "B"), ("Translation B is more accurate.", "B"),
    ("A is not better than B.", "B"), ("B is worse than A.", "A"),
    ("B\n\nExplanation: Translation A mistranslates the verb.", "B"),
    ("I would choose translation B because translation A contains an error.", "B"),
    ("Translation A is slightly more fluent, while translation A also keeps the meaning.", "A"),
    ("A better rendering keeps the tone; I pick B.", "B"),
    ("翻译B更好", "B"), ("B。翻译B更准确地传达了原意。", "B"), ("答案是A", "A"), ("答案：B", "B"),
    ("我选择A，因为它更流畅。", "A"), ("Übersetzung B ist besser.", "B"), ("Ответ: A", "A"),
    ("Перевод B лучше", "B"), ("translation a", "A"),
    ("B<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nB", "B"),
    ("Both are equally good.", None), ("Neither A nor B", None),
    ("A is better for fluency, but B is better for accuracy.", None),
    ("The translations differ in tone.", None), ("", None),
])
def test_verdict_table(reply, verdict):
    assert parse_verdict(reply).value == verdict


# ---------------------------------------------------------------- post-edits

@pytest.mark.parametrize("reply, text", [
    ("Corrected Translation: Das Haus ist groß.", "Das Haus ist groß."),
    ('Corrected Translation: "Das Haus ist groß."', "Das Haus ist groß."),
    ("**Corrected Translation:** Das Haus ist groß.\n\nI replaced the verb.", "Das Haus ist groß."),
    ("Corrected Translation:\n\nDas Haus ist groß.", "Das Haus ist groß."),
    ("The corrected translation is: Das Haus ist groß.", "Das Haus ist groß."),
    ('"Das Haus ist groß." -- Corrected Translation:', "Das Haus ist groß."),
    ("Das Haus ist groß.", "Das Haus ist groß."),
    ("Das Haus ist groß.<|eot_id|>", "Das Haus ist groß."),
    ("Corrected Translation:", None),
    ("   \n  ", None),
])
def test_post_edit_table(reply, text):
    assert parse_post_edit(reply).value == text


# ---------------------------------------------------------------- scoring presets

@pytest.mark.parametrize("severities, expected", [
    ([], 0.0),
    (["minor"], -1.0),
    (["major", "minor", "minor"], -7.0),
    (["critical"], -25.0),
    (["critical", "minor"], -25.0),                      # capped at 25
    (["major"] * 6, -25.0),                              # first 5 only: 25
    (["minor"] * 7, -5.0),                               # first 5 only
    (["minor"] * 4 + ["major"] * 2, -13.0),              # most severe first: 5+5+1+1+1
    (["minor", "minor", "minor", "minor", "minor", "major"], -9.0),  # major counted before minors
])
def test_gemba_mqm_scoring(severities, expected):
    assert GEMBA_MQM.score(severities) == expected


def test_gemba_mqm_scoring_on_parsed_demo():
    assert GEMBA_MQM.score(sev(parse_gemba_mqm(GEMBA_DEMO))) == -12.0  # 5+5+1+1


@pytest.mark.parametrize("weighted, expected", [
    ([], 0.0),
    ([("major", 1.0), ("minor", 0.5)], -5.5),
    ([("critical", 0.5), ("major", 0.0), ("minor", 1.0)], -13.5),
    ([("critical", 1.0), ("minor", 1.0)], -25.0),        # floored at -25
    ([("minor", 1.0)] * 8, -8.0),                        # no 5-error cap
    ([("major", 0.0)] * 3, 0.0),
])
def test_mqm_ape_scoring(weighted, expected):
    assert MQM_APE.score(weighted) == expected


@pytest.mark.parametrize("major, minor, w_major, expected", [
    (0, 0, 5, 0.0), (2, 5, 5, -15.0), (2, 4, 5, -14.0), (1, 3, 10, -13.0), (7, 0, 5, -35.0),
])
def test_eaprompt_scoring(major, minor, w_major, expected):
    assert eaprompt_score(major, minor, w_major) == expected


def test_scores_are_never_negative_zero():
    assert str(GEMBA_MQM.score([])) == "0.0" and str(MQM_APE.score([("major", 0.0)])) == "0.0"


def test_presets_lookup():
    assert get_scoring("eaprompt") is EAPROMPT
    with pytest.raises(ValueError, match="did you mean 'gemba_mqm'"):
        get_scoring("gemba-mqm")
    with pytest.raises(ValueError, match="no weight"):
        EAPROMPT.score(["critical"])


# ---------------------------------------------------------------- no parser ever raises

PARSERS = [parse_gemba_mqm, parse_mqm_ape_errors, parse_eaprompt_errors, parse_eaprompt_counts,
           parse_da_score, parse_verdict, parse_post_edit]
FRAGMENTS = ["Critical:", "Major:", "Minor:", "**Major errors:**", "Minor errors: ", "no-error", "None",
             'accuracy/mistranslation - "x"', "non-translation - “y”", "(1) “z” – Omission", "- ", "1.",
             "2, 5", "Score: ", "85", "/100", "-1", "A", "B", "Translation A", "is better", "than",
             "翻译", "更好", "Corrected Translation:", "--", '"', "“", "”", "\n", " ", "<|eot_id|>", "٣",
             "9" * 40, "*" * 30, " " * 50]
replies = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join),
)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@settings(max_examples=300, deadline=None)
@given(reply=replies)
def test_parsers_never_raise(parser, reply):
    parsed = parser(reply)
    assert parsed.status in ("ok", "failed")
    assert (parsed.value is None) == (parsed.status == "failed")
    assert parsed.reason is None or isinstance(parsed.reason, str)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("junk", [None, 42, b"A", ["Major:"], "\x00" * 10, "x" * 100_000, "1" * 5000])
def test_parsers_survive_odd_input(parser, junk):
    assert parser(junk).status in ("ok", "failed")


ADVERSARIAL = {"blanks": " " * 20_000 + "x", "header-blanks": "Major" + " " * 20_000 + "x",
               "key-blanks": "answer" + " " * 20_000 + "x", "dashes": " - " * 7_000,
               "openers": "Major:\na - " + "«" * 20_000, "letters": "A " * 10_000}


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_parsers_do_not_backtrack_catastrophically(parser, name):
    import time

    start = time.perf_counter()
    parser(ADVERSARIAL[name])
    assert time.perf_counter() - start < 3.0  # quadratic patterns took minutes here

"""The translation templates of Peng et al. (2023) render the paper's prompt formats: the whole
rendered conversation is compared with the prompt written out by hand for a fixed input."""

from __future__ import annotations

from promptweave.prompts import get_template

VARS = {"source": "Das Haus ist rot.", "src_lang_name": "German", "tgt_lang_name": "English"}
ASK = "Please provide the English translation for the following sentence"
EX = [{"source": "Der Hund bellt.", "target": "The dog barks.", "steps": [["Der Hund", "The dog"], ["bellt", "barks"]]},
      {"source": "Es regnet.", "target": "It is raining."}]


def conversation(name: str, **extra) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in get_template(name).render({**VARS, **extra})]


def test_baseline_and_tsp():
    assert conversation("baseline") == [("user", f"{ASK}: Das Haus ist rot.")]
    assert conversation("tsp") == [("system", "You are a machine translation system."),
                                   ("user", f"{ASK}: Das Haus ist rot.")]


def test_cot_zero_is_the_papers_one_sentence_request():
    assert conversation("cot-zero") == [
        ("user", f"{ASK} step by step and then provide the complete sentence: Das Haus ist rot.")]


def test_cot_one_is_one_user_turn_with_a_translated_demonstration():
    assert conversation("cot-one", examples=EX[:1]) == [("user", (
        f"{ASK} step by step and then provide the complete sentence: Der Hund bellt.\n"
        "1. Der Hund - The dog\n"
        "2. bellt - barks\n"
        "The complete sentence in English is: The dog barks.\n"
        f"{ASK} step by step and then provide the complete sentence: Das Haus ist rot."))]


def test_icl_is_one_user_turn_of_language_labelled_lines():
    examples = [{"source": e["source"], "target": e["target"]} for e in EX]
    assert conversation("icl", examples=examples) == [("user", (
        "German: Der Hund bellt.\nEnglish: The dog barks.\n"
        "German: Es regnet.\nEnglish: It is raining.\n"
        "German: Das Haus ist rot.\nEnglish:"))]


def test_icl_chat_keeps_the_chat_turn_variant():
    examples = [{"source": "Es regnet.", "target": "It is raining."}]
    assert conversation("icl-chat", examples=examples) == [
        ("system", "You are a machine translation system."),
        ("user", f"{ASK}: Es regnet."), ("assistant", "It is raining."),
        ("user", f"{ASK}: Das Haus ist rot.")]

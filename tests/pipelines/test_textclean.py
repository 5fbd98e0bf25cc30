from __future__ import annotations

import pytest

from promptweave.pipelines.steps.textclean import clean_translation, wrong_language


@pytest.mark.parametrize("raw, cot, expected, removed", [
    ("The house is red.", False, "The house is red.", []),
    ("Here is the translation: The house is red.", False, "The house is red.", ["preamble"]),
    ("Sure! Here's the English translation of the sentence:\n\nThe house is red.", False, "The house is red.",
     ["preamble"]),
    ('"The house is red."', False, "The house is red.", ["quotes"]),
    ("Translation: «La maison est rouge.»", False, "La maison est rouge.", ["preamble", "quotes"]),
    ("The house is red.\n\nNote: 'Haus' can also mean home.", False, "The house is red.", ["note"]),
    ("译文：房子是红色的。", False, "房子是红色的。", ["preamble"]),
    ("Step 1: 'Das Haus' = 'the house'\nStep 2: 'ist rot' = 'is red'\nTranslation: The house is red.", True,
     "The house is red.", ["reasoning"]),
    ('"He said "hi" to me."', False, '"He said "hi" to me."', []),  # inner quotes: leave alone
    ("", False, "", []),
])
def test_clean_translation(raw: str, cot: bool, expected: str, removed: list[str]) -> None:
    assert clean_translation(raw, cot=cot) == (expected, removed)


@pytest.mark.parametrize("text, tgt, source, wrong", [
    ("The house is red.", "en", None, False),
    ("房子是红色的。", "zh", None, False),
    ("The house is red.", "zh", None, True),
    ("Дом красный.", "ru", None, False),
    ("Das Haus ist rot.", "ru", None, True),
    ("家は赤いです。", "ja", None, False),
    ("Das Haus ist sehr rot heute.", "en", "Das Haus ist sehr rot heute.", True),  # copied the source
    ("42", "zh", None, False),  # no letters: no verdict
])
def test_wrong_language(text: str, tgt: str, source: str | None, wrong: bool) -> None:
    assert wrong_language(text, tgt, source) is wrong

"""The table of common language names (promptweave/langnames.py) says what langcodes says."""

from __future__ import annotations

import langcodes
import pytest

from promptweave.langnames import NAMES
from promptweave.languages import LanguageError, language_name, normalize


def test_every_tag_in_the_table_is_standard_valid_and_named_as_langcodes_names_it() -> None:
    assert len(NAMES) > 150
    wrong = {}
    for tag, name in NAMES.items():
        lang = langcodes.Language.get(tag)
        got = (langcodes.standardize_tag(tag), lang.is_valid(), str(lang.display_name("en")))
        if got != (tag, True, name):
            wrong[tag] = got
    assert not wrong, f"regenerate promptweave/langnames.py from langcodes: {wrong}"


@pytest.mark.parametrize("given, tag, name", [
    ("de", "de", "German"), ("zh-Hant", "zh-Hant", "Chinese (Traditional)"), ("zh_hant", "zh-Hant", "Chinese (Traditional)"),
    ("iw", "he", "Hebrew"), (" en ", "en", "English"), ("fil", "fil", "Filipino"), ("oci", "oc", "Occitan"),
    ("gsw", "gsw", "Swiss German"),  # not in the table: langcodes
])
def test_tags_in_and_out_of_the_table_normalize_and_name_alike(given: str, tag: str, name: str) -> None:
    assert normalize(given) == tag and language_name(given) == name


@pytest.mark.parametrize("bad", ["xx", "German", "", "und", "de-"])
def test_what_is_not_a_language_code_is_refused(bad: str) -> None:
    with pytest.raises(LanguageError):
        normalize(bad)

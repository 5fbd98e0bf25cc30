"""The table of common language names (promptweave/langnames.py) says what langcodes says."""

from __future__ import annotations

import langcodes
import pytest

from promptweave.langnames import BASES, NAMES
from promptweave.languages import LanguageError, base_language, language_name, normalize


def test_every_tag_in_the_table_is_standard_valid_and_named_as_langcodes_names_it() -> None:
    assert len(NAMES) > 150
    wrong = {}
    for tag, name in NAMES.items():
        lang = langcodes.Language.get(tag)
        got = (langcodes.standardize_tag(tag), lang.is_valid(), str(lang.display_name("en")))
        if got != (tag, True, name):
            wrong[tag] = got
    assert not wrong, f"regenerate promptweave/langnames.py from langcodes: {wrong}"


def test_every_tag_in_the_table_has_the_base_language_langcodes_gives() -> None:
    """base_language() answers the table's tags without langcodes (BLEU's tokenizer keys on it)."""
    wrong = {}
    for tag in NAMES:
        want = str(langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language)
        if base_language(tag) != want:
            wrong[tag] = (base_language(tag), want)
    assert not wrong, f"fix BASES in promptweave/langnames.py: {wrong}"
    assert set(BASES) <= set(NAMES)
    assert (base_language("cmn-Hans"), base_language("zh_TW"), base_language("arb")) == ("zh", "zh", "ar")


def test_reading_a_config_with_common_languages_does_not_load_langcodes(tmp_path) -> None:
    """Its tables take ~0.1 s to load in every process that reads a config."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "d.jsonl").write_text('{"source": "Hallo", "reference": "Hello"}\n', encoding="utf-8")
    (tmp_path / "p.yaml").write_text(f"""name: t
model: {{backend: scripted, options: {{default: "{{{{echo}}}}"}}}}
data: {{path: {tmp_path / 'd.jsonl'}, src_lang: de, tgt_lang: zh-Hant}}
steps:
  - id: hyp
    translate: {{prompt: tsp}}
metrics: [bleu, chrf]
""", encoding="utf-8")
    code = ("import sys; from promptweave import load_config; load_config(sys.argv[1]); "
            "print('langcodes' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.yaml")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"


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

"""Property tests: whatever text a model or a row brings, the reply parsers, the translation
cleanup, the language check and the template renderer return (or raise a TemplateError), fast."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from promptweave.errors import TemplateError
from promptweave.pipelines.steps.generate import parse_reply
from promptweave.pipelines.steps.textclean import clean_translation, script_share, wrong_language
from promptweave.prompts.templates import PromptTemplate

PROPS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# text that looks like model replies: markers, quotes, fences, numbers, scripts, whitespace
REPLY_BITS = ["Translation:", "translation: ", "Here is the translation:", "Sure! ", "Note:", "\n", "\r\n", " ",
              "\t", '"', "“", "”", "«", "»", "「", "」", "'", "```", "```json", "{", "}", "[", "]", ":", ",",
              "-1", "3.5", "1e309", "NaN", "null", "true", "**", "译文：", "Перевод:", "नमस्ते", "ข", "😀", "\x00",
              "\u200b", "\ud7ff", "Final translation: ", "(note", "a", "Z", "ß"]
replies = st.one_of(st.text(), st.lists(st.sampled_from(REPLY_BITS), max_size=40).map("".join),
                    st.lists(st.one_of(st.sampled_from(REPLY_BITS), st.text(max_size=5)), max_size=30).map("".join))
LANGS = ["en", "de", "zh", "ja", "ko", "ru", "ar", "he", "hi", "th", "km", "sah", "zh-Hant", "", "xx", "EN-us", "-"]


@PROPS
@given(replies, st.sampled_from(["text", "strip", "first_line", "json", "number", "no-such-parser"]))
def test_parse_reply_never_raises(text: str, parser: str) -> None:
    value, status = parse_reply(text, parser)
    assert status in ("ok", "failed")
    if status == "failed":
        assert value is None


@PROPS
@given(replies, st.booleans())
def test_clean_translation_never_raises_and_only_removes(text: str, cot: bool) -> None:
    out, removed = clean_translation(text, cot=cot)
    assert isinstance(out, str) and len(out) <= len(text)
    assert all(isinstance(r, str) for r in removed)


@PROPS
@given(replies, st.one_of(st.sampled_from(LANGS), st.text(max_size=8), st.none()), st.one_of(replies, st.none()))
def test_wrong_language_never_raises(text: str, tgt: str | None, source: str | None) -> None:
    assert wrong_language(text, tgt, source) in (True, False)
    shares = script_share(text)
    assert not shares or abs(sum(shares.values()) - 1.0) < 1e-9


@pytest.mark.parametrize("text", [
    " " * 50_000 + "x", "translation " * 5_000, "Here is the translation of the " * 3_000, "\n" * 50_000,
    '"' * 50_000, "«" * 20_000 + "»", "Translation: " * 5_000 + "done", "(note " * 10_000, "```" * 10_000,
    "[" * 100_000, "1 " * 50_000, "a" * 200_000,
])
def test_adversarial_replies_are_fast(text: str) -> None:
    t0 = time.perf_counter()
    for parser in ("strip", "first_line", "json", "number"):
        parse_reply(text, parser)
    clean_translation(text, cot=True)
    clean_translation(text, cot=False)
    wrong_language(text, "de", text[:100])
    assert time.perf_counter() - t0 < 2.0


# ---------------------------------------------------------------- the template renderer

JINJA_BITS = ["{{", "}}", "{%", "%}", "{#", "#}", " source ", " x ", "|upper", "|length", "|join(',')", "|attr('x')",
              " if ", " else ", " endif ", " for ", " in ", " endfor ", " set ", "=", "(", ")", "[", "]", ".", "'",
              '"', "~", "+", "*", "**", "/", "//", "%", "0", "1", "-1", "9" * 30, "__class__", "_", "range(",
              "lipsum", "cycler", "namespace", "self", "loop.index", "none", "true", " and ", " not ", ",", ":",
              "\n", "raise", "include", "import", "macro", "call", "filter", "block", "extends", "\\", "{{ source }}"]
templates = st.one_of(st.text(), st.lists(st.sampled_from(JINJA_BITS), max_size=25).map("".join))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)


def _render(content: str, variables: dict[str, Any]) -> None:
    tpl = PromptTemplate(name="prop", messages=[{"role": "user", "content": content}])
    try:
        out = tpl.render(variables)
    except TemplateError:  # the one error a template may raise; never another type
        return
    assert len(out) == 1 and isinstance(out[0].content, str)


@PROPS
@given(templates, st.dictionaries(st.sampled_from(["source", "x", "hyp", "examples"]), values, max_size=4))
def test_any_template_renders_or_raises_template_error(content: str, variables: dict[str, Any]) -> None:
    _render(content, variables)


@PROPS
@given(values, values)
def test_any_row_values_render_in_a_fixed_template(source: Any, examples: Any) -> None:
    content = ("{{ source }} {% for ex in examples %}{{ ex }}{% endfor %} {{ source|string|upper }} "
               "{{ examples|length }}")
    variables = {"source": source, "examples": examples if isinstance(examples, (list, dict, str)) else [examples]}
    _render(content, variables)
    # row values are data, never templates: Jinja syntax inside them is printed as is
    tpl = PromptTemplate(name="data", messages=[{"role": "user", "content": "{{ source }}"}])
    assert tpl.render({"source": "{{ 7 * 7 }}"})[0].content == "{{ 7 * 7 }}"


def test_for_turns_over_any_examples() -> None:
    tpl = PromptTemplate(name="turns", messages=[
        {"for": "ex in examples", "messages": [{"role": "user", "content": "{{ ex.source }}"},
                                               {"role": "assistant", "content": "{{ ex.target }}"}]},
        {"role": "user", "content": "{{ source }}"}])
    assert len(tpl.render({"examples": [{"source": "a", "target": "b"}], "source": "c"})) == 3
    for bad in ("not a list", 42, [{"source": "a"}]):
        with pytest.raises(TemplateError):
            tpl.render({"examples": bad, "source": "c"})


# -- input hardening: strict JSON, language codes, delimited files, the bounded sandbox ----------------

JSON_BITS = ["{", "}", "[", "]", ",", ":", '"a"', '"source"', "1", "-0", "1.5e3", "1e999", "NaN", "Infinity",
             "-Infinity", "null", "true", " ", "\n", '"\\u0000"', '"\\ud800"', "9" * 30]


@PROPS
@given(st.lists(st.sampled_from(JSON_BITS), max_size=40).map("".join))
def test_strict_json_accepts_only_standard_finite_json(text: str) -> None:
    import json

    from promptweave.data.strictjson import StrictJSONError, is_finite_json, loads

    try:
        value = loads(text)
    except StrictJSONError:
        return
    assert is_finite_json(value)
    assert json.loads(json.dumps(value, allow_nan=False)) == value


@PROPS
@given(st.one_of(st.text(max_size=20), st.sampled_from(LANGS + ["Chinese", "fil", "zh_TW", "iw", "cmn", "und",
                                                               "x-private", "en-GB-oed", "i-klingon"])))
def test_language_codes_normalise_or_raise_language_error(value: str) -> None:
    from promptweave.evaluators.lexical import TOKENIZER_BY_TARGET, default_tokenizer
    from promptweave.languages import LanguageError, language_name, normalize

    try:
        code = normalize(value)
    except LanguageError as exc:
        assert "\n" not in str(exc)
        return
    assert normalize(code) == code  # idempotent
    name = language_name(code)
    assert name and code not in ("",) and "Unknown" not in name
    assert default_tokenizer(code) in {"13a", "char", *TOKENIZER_BY_TARGET.values()}


CSV_BITS = ["a", "b", ",", "\t", '"', '""', "\n", "\r\n", " ", "None", "source", "reference", "é", "\x00"]


@PROPS
@given(st.lists(st.sampled_from(CSV_BITS), max_size=40).map("".join), st.sampled_from(["csv", "tsv"]))
def test_delimited_files_load_or_raise_data_error(tmp_path_factory: pytest.TempPathFactory, text: str, fmt: str) -> None:
    from promptweave.config import DataConfig
    from promptweave.data import load_rows
    from promptweave.errors import DataError

    d = tmp_path_factory.mktemp("delim")
    (d / f"d.{fmt}").write_text(text, encoding="utf-8", newline="")
    try:
        rows = load_rows(DataConfig(path=f"d.{fmt}"), d, source_fields={"source"} if "source" in text else ())
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    for _, row in rows:
        assert all(isinstance(v, str) for v in row.values())  # cells stay text


DANGER = ["{{ ", " }}", "{% for i in range(", ") %}", "{% endfor %}", "99999", "999999999", "'x'", " * ", " ** ",
          " ~ ", " + ", " % ", "|center(", "|indent(", "|format(", ".ljust(", "'{0:>", "}'.format(1)", "lipsum(",
          "(", ")", ",", "s", "{% set s = ", " %}", "[1]", "|join", "|list"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(DANGER), max_size=25).map("".join))
def test_sandbox_renders_or_stops_within_its_budget(text: str) -> None:
    """Any mix of the dangerous operations renders or raises TemplateError, within the time budget
    (plus slack) and without building a string over the size limit."""
    from promptweave.prompts.sandbox import MAX_SECONDS, MAX_STRING

    tpl = PromptTemplate(name="fuzz", messages=[{"role": "user", "content": text}])
    start = time.monotonic()
    try:
        out = tpl.render({"s": "Hallo"})
    except TemplateError:
        out = []
    assert time.monotonic() - start < MAX_SECONDS + 3
    assert all(len(m.content) <= MAX_STRING for m in out)

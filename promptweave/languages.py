"""Language codes: BCP-47 tags checked against the CLDR/IANA tables of ``langcodes``.

One place decides what a language setting means, so that the prompt ("the Filipino
translation"), the BLEU tokenizer and the wrong-language check all agree:

* :func:`normalize` turns ``zh_Hant``, ``ZH-hant``, ``iw`` into the standard tag (``zh-Hant``,
  ``he``) and rejects what is not a language code. A language *name* (``Chinese``) is rejected
  with the code to use instead (``did you mean 'zh'?``): a name cannot say which script or
  variety is meant, and metrics key on codes.
* :func:`language_name` gives the English display name (``zh-Hant`` -> ``Chinese (Traditional)``).
* :func:`base_language` gives the macrolanguage (``cmn-Hans`` -> ``zh``) that tokenizer choices key on.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .errors import PromptweaveError
from .langnames import BASES, NAMES


def _langcodes() -> Any:
    """``langcodes``, imported on first use: its tables take ~0.1 s to load, and the common tags
    (:mod:`.langnames`) never need them."""
    import langcodes

    return langcodes


_ISO639 = re.compile(r"^[a-z]{2,3}$")  # a primary language subtag (no private-use x-, no grandfathered i-)


class LanguageError(PromptweaveError, ValueError):
    """A language setting that is not a known BCP-47 language tag."""


@lru_cache(maxsize=4096)
def normalize(value: str) -> str:
    """The standard BCP-47 form of ``value``; :class:`LanguageError` with a suggestion if unknown."""
    if isinstance(value, str) and value in NAMES:  # a common tag, already standard and valid
        return value
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not text:
        raise LanguageError("a language is a BCP-47 code such as de, en, zh-Hant or fil")
    langcodes = _langcodes()
    try:
        tag = langcodes.standardize_tag(text.replace("_", "-"))
        lang = langcodes.Language.get(tag)
    except Exception:  # noqa: BLE001 - LanguageTagError, ValueError, or the CLDR index failing on odd text
        tag, lang = "", None
    if lang is not None and lang.language and _ISO639.match(lang.language) and lang.language != "und" \
            and lang.is_valid() and not str(lang.display_name("en")).startswith("Unknown language"):
        return tag
    shown = value if len(value) <= 40 else value[:40] + "…"
    raise LanguageError(f"{shown!r} is not a BCP-47 language code{_suggestion(text)}; "
                        "use a code such as de, en, zh-Hant or fil")


def _suggestion(text: str) -> str:
    """`` (did you mean 'zh'?)`` when ``text`` is a language name, else ``""``."""
    if len(text) > 60 or not text.isprintable():
        return ""
    try:
        found = _langcodes().find(text)
    except Exception:  # noqa: BLE001 - only a hint; the name index can fail on odd text (SystemError)
        return ""
    return f" (did you mean '{found.to_tag()}' for {found.display_name()}?)"


def is_valid(value: str) -> bool:
    try:
        normalize(value)
    except LanguageError:
        return False
    return True


@lru_cache(maxsize=4096)
def language_name(code: str | None) -> str | None:
    """``"de"`` -> ``"German"``, ``"zh-Hant"`` -> ``"Chinese (Traditional)"``; ``None`` stays ``None``.

    Raises :class:`LanguageError` for anything that is not a language code: a prompt must never
    read "the xx translation".
    """
    if code is None:
        return None
    tag = normalize(code)
    return NAMES.get(tag) or str(_langcodes().Language.get(tag).display_name("en"))


@lru_cache(maxsize=4096)
def base_language(code: str | None) -> str | None:
    """The primary language subtag with macrolanguages folded (``cmn`` -> ``zh``), lower case."""
    if code is None:
        return None
    tag = normalize(code)
    if tag in NAMES:  # (tests/test_languages.py checks these against langcodes)
        return BASES.get(tag) or tag.split("-")[0]
    langcodes = _langcodes()
    return str(langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language)


@lru_cache(maxsize=4096)
def script_of(code: str) -> str | None:
    """The script the language is most likely written in (``zh-Hant`` -> ``Hant``, ``sr`` -> ``Cyrl``)."""
    lang = _langcodes().Language.get(normalize(code))
    return lang.script or lang.maximize().script


__all__ = ["LanguageError", "base_language", "is_valid", "language_name", "normalize", "script_of"]

"""Clean a model's translation reply and flag suspicious output.

Chat models wrap translations in preambles ("Here is the translation:"), quotes and trailing
notes; chain-of-thought replies end with "Translation: ...". We keep the translation and say
what we removed, so a reader can audit every change.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

_PREAMBLE = re.compile(
    r"^\s*(?:sure[,!.]?\s*|certainly[,!.]?\s*|of course[,!.]?\s*)?"
    r"(?:here(?:'s| is| are)\s+(?:the|a|my|your)?\s*(?:\w+\s+){0,3}?translations?"
    r"(?:\s+(?:of|for)\s+(?:the|this|that|your)?\s*(?:\w+\s+){0,2}?(?:sentence|text|segment|phrase|input))?"
    r"(?:\s+(?:in|into|to)\s+\w+)?\s*[:：]|"
    r"(?:the\s+)?(?:\w+\s+)?translation(?:\s+is)?\s*[:：]|"
    r"(?:译文|翻译|Übersetzung|Перевод)\s*[:：])\s*",
    re.I,
)
_MARKER = re.compile(r"(?im)^\s*(?:\**\s*)?(?:(?:final|complete)\s+)?translation\s*(?:\**)?\s*[:：]\s*(?:\**)?(.+)$")
_TRAILING_NOTE = re.compile(r"\n\s*(?:\(?\s*(?:note|notes|explanation|注|注意|Hinweis|Anmerkung)\b.*)$", re.I | re.S)
_QUOTES = [('"', '"'), ("“", "”"), ("„", "“"), ("«", "»"), ("'", "'"), ("「", "」"), ("『", "』")]


# "The complete sentence in German is:" / "Complete sentence:" (Peng et al.'s CoT replies, often
# inline after the numbered phrase list) or a "Translation:" line
_FINAL = re.compile(r"(?i)(?:\bthe\s+)?\bcomplete\s+(?:sentence|translation)(?:\s+in\s+[^\s:：]+)?(?:\s+is)?"
                    r"\s*[:：]\s*(?:\**)?([^\n]+)")


_INLINE = re.compile(r"(?i)\btranslation\s*[:：]\s*([^\n]+)")


def final_sentence(text: str) -> tuple[str, list[str]]:
    """The complete sentence that ends a step-by-step (CoT) reply, and ``["reasoning"]`` when
    something before it was dropped; the reply unchanged when it names no complete sentence."""
    out = text.strip()
    found = _FINAL.findall(out) or _MARKER.findall(out) or _INLINE.findall(out)
    if not found:
        return out, []
    return found[-1].strip(), ["reasoning"]


def clean_translation(text: str, cot: bool = False) -> tuple[str, list[str]]:
    """Return the translation and a list of what was removed (``preamble``, ``quotes``, ...);
    ``cot`` first keeps the complete sentence of a step-by-step reply (:func:`final_sentence`)."""
    removed: list[str] = []
    out = text.strip()
    if cot:
        out, removed = final_sentence(out)
    m = _PREAMBLE.match(out)
    if m and m.end() < len(out):
        out = out[m.end():].lstrip()
        removed.append("preamble")
    note = _TRAILING_NOTE.search(out)
    if note and note.start() > 0:
        out = out[: note.start()].rstrip()
        removed.append("note")
    for left, right in _QUOTES:
        balanced = out.count(left) == 2 if left == right else (out.count(left) == 1 and out.count(right) == 1)
        if len(out) >= 2 and out.startswith(left) and out.endswith(right) and balanced:
            out = out[len(left): -len(right)].strip()
            removed.append("quotes")
            break
    if out.startswith("```") and out.endswith("```"):
        out = out.strip("`").strip()
        removed.append("code fence")
    return out, removed


# rough script expectations per target language
_SCRIPTS = {
    "zh": "Han", "ja": "CJK", "ko": "Hangul", "ru": "Cyrillic", "uk": "Cyrillic", "bg": "Cyrillic",
    "sr": "Cyrillic", "kk": "Cyrillic", "sah": "Cyrillic", "ar": "Arabic", "fa": "Arabic", "ps": "Arabic",
    "ur": "Arabic", "he": "Hebrew", "el": "Greek", "hi": "Devanagari", "th": "Thai", "bn": "Bengali",
    "gu": "Gujarati", "ta": "Tamil", "km": "Khmer",
}


@functools.lru_cache(maxsize=1 << 16)
def _script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("CJK UNIFIED") or name.startswith("CJK COMPATIBILITY IDEOGRAPH"):
        return "Han"
    if name.startswith(("HIRAGANA", "KATAKANA")):
        return "Kana"
    for script in ("LATIN", "CYRILLIC", "HANGUL", "ARABIC", "HEBREW", "GREEK", "DEVANAGARI", "THAI",
                   "BENGALI", "GUJARATI", "TAMIL", "KHMER"):
        if name.startswith(script):
            return script.capitalize()
    return "Other"


def script_share(text: str) -> dict[str, float]:
    """Share of each script among the letters of ``text`` (scripts in order of first appearance)."""
    # Counter counts characters in C; each distinct character is classified once (and cached
    # across calls), so the Python work per text is per distinct character, not per character.
    # Counter keeps first-occurrence order, so scripts come out in the order the loop gave.
    counts: dict[str, int] = {}
    for ch, n in Counter(text).items():
        s = _script_of(ch)
        if s:
            counts[s] = counts.get(s, 0) + n
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.items()}


def wrong_language(text: str, tgt_lang: str | None, source: str | None = None) -> bool:
    """True when the output is clearly not in the target language's script, or copies the source."""
    if not tgt_lang or not text.strip():
        return False
    if source is not None and text.strip() == source.strip() and len(text.strip()) > 12:
        return True
    shares = script_share(text)
    if not shares:
        return False
    code = tgt_lang.lower().split("-")[0]
    expected = _SCRIPTS.get(code, "Latin")
    if expected == "CJK":  # Japanese mixes kana and kanji
        return shares.get("Han", 0) + shares.get("Kana", 0) < 0.3
    return shares.get(expected, 0) < 0.3

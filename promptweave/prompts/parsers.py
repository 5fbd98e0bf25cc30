"""Parsers for LLM judges' replies. They never raise: a reply that cannot be read becomes a
:class:`Parsed` with ``status == "failed"`` and a reason, and the caller decides (retry, or a
missing score, never a zero).

- :func:`parse_gemba_mqm`: GEMBA-MQM error lists (``Critical:``/``Major:``/``Minor:``).
- :func:`parse_mqm_ape_errors`: the same lists, read the MQM-APE way (every error line kept).
- :func:`parse_eaprompt_errors` / :func:`parse_eaprompt_counts`: EAPrompt's itemized errors and
  its two numbers ``"major, minor"``.
- :func:`parse_da_score`: GEMBA-DA, exactly one number in range.
- :func:`parse_verdict`: a pairwise ``A``/``B`` choice, in whatever wording.
- :func:`parse_post_edit`: the corrected sentence of an automatic post-edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
ParseStatus = Literal["ok", "failed"]


@dataclass
class Parsed(Generic[T]):
    """A parser's result: ``value`` is None exactly when the parse failed (``reason`` says
    why); ``dropped`` lists reply lines that were read but not used; ``notes`` says where a
    reference-parity parser scored a reply the way its paper's code does although the reply was
    not well formed, so that such a score is never silent."""

    value: T | None
    reason: str | None = None
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> ParseStatus:
        return "failed" if self.value is None else "ok"

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class MQMError:
    """One annotated error: severity, category (as the model wrote it) and the quoted span."""

    severity: str
    category: str
    span: str | None
    line: str

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "category": self.category, "span": self.span,
                "line": self.line}


def _fail(reason: str, dropped: list[str] | None = None) -> Parsed[Any]:
    return Parsed(None, reason=reason, dropped=dropped or [])


# Chat-template tokens some local models leak into their text; everything after one is noise.
_SPECIAL = re.compile(r"<\|(?:eot_id|im_end|end|endoftext)\|>|</s>|<end_of_turn>|<eos>")


def _clean(text: object) -> str:
    if not isinstance(text, str):
        return ""
    return _SPECIAL.split(text, maxsplit=1)[0].replace("\r", "")


# ---------------------------------------------------------------- MQM error lists (GEMBA, APE)

# Written so that no two quantifiers compete for the same characters (no slow backtracking).
_HEADER = re.compile(r"^[\s>#*_•-]*(critical|major|minor)(?:\s+(?:errors?|issues?))?[\s*_]*"
                     r"(?:\(\d+\)[\s*_]*)?(?P<colon>[:：])?(?P<rest>.*)$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•·+]|\d{1,3}[.)]|\(\d{1,3}\))\s*")
# (?<!\s): a separator starts where a word ends, not at every blank of a long run
_SEPARATOR = re.compile(r"(?<!\s)(?:\s+[-–—]\s+|\s*[-–—]\s*(?=[\"“”„«‘']))")
_DOUBLE = re.compile(r"[\"“”„«](.{1,500}?)[\"“”»](?!\w)")
_SINGLE = re.compile(r"(?<!\w)[‘'`](.{1,500}?)[’'`](?!\w)")
_NO_ERROR = re.compile(r"\bno[- ]errors?\b", re.I)
_EMPTY = {"", "none", "n/a", "na", "-", "nothing", "none.", "no", "null"}
_CATEGORIES = ("accuracy", "fluency", "style", "terminology", "non-translation", "other",
               "locale convention", "locale")


def _header(pattern: re.Pattern[str], line: str) -> tuple[str, str] | None:
    """``(severity, text after the colon)`` when ``line`` is a severity header."""
    m = pattern.match(line)
    if m is None:
        return None
    rest = m.group("rest").strip(" \t*_")
    if m.group("colon") is None and rest:
        return None  # "Major errors disrupt the flow" is prose, not a header
    return m.group(1).lower(), rest


def _split_error(body: str) -> tuple[str, str | None] | None:
    """``category/subcategory - "span"`` -> (category, span); None without a separator."""
    m = _SEPARATOR.search(body)
    if m is None:
        return None
    category = body[: m.start()].strip().strip("*_`").strip()
    rest = body[m.end():].strip()
    # double quotes first, non-greedy and closed only before a non-letter: an apostrophe inside
    # ("people's") never ends a span, and a comment after the span is never swallowed
    quoted = _DOUBLE.match(rest) or _DOUBLE.search(rest) or _SINGLE.search(rest)
    span = quoted.group(1) if quoted else (rest.strip("*_ ") or None)
    return category, span


def _scan_sections(text: object, header: re.Pattern[str], default: str | None,
                   strip_bullets: bool) -> tuple[list[tuple[str | None, str]], bool, bool]:
    """Lines of a sectioned reply with the severity in force: ``(severity or default, line)``.

    Returns the lines, whether a severity header was seen and whether a no-error statement
    was seen. Headers are read leniently (``**Major:**``, ``Major errors:``, ``### Minor``,
    ``Critical: <error on the same line>``); no-error and empty lines are skipped.
    """
    lines: list[tuple[str | None, str]] = []
    level, headers, no_error = default, False, False
    for raw in _clean(text).split("\n"):
        line = raw.strip()
        head = _header(header, line)
        if head:
            (level, line), headers = head, True
        if not line:
            continue
        if _NO_ERROR.search(line) or line.strip("*_.` ").lower() in _EMPTY:
            no_error = True
            continue
        lines.append((level, _BULLET.sub("", line, count=1).strip() if strip_bullets else line))
    return lines, headers, no_error


def _scan_mqm(text: object, default: str | None) -> tuple[list[tuple[str | None, str]], bool, bool]:
    """MQM reply lines (bullets stripped) under ``Critical:``/``Major:``/``Minor:`` headers."""
    return _scan_sections(text, _HEADER, default, strip_bullets=True)


def parse_gemba_mqm(text: object) -> Parsed[list[MQMError]]:
    """A GEMBA-MQM reply: error lines under ``Critical:``/``Major:``/``Minor:`` headers.

    As in GEMBA (``gemba_mqm_utils.parse_mqm_answer``): case-insensitive, no-error lines are
    skipped, lines before any header are dropped, and any error mentioning non-translation is
    critical. Unlike GEMBA, lines under a header that do not look like an error (neither a
    known category first nor ``category - "span"``) are dropped and reported, not counted,
    and a reply with neither a header nor a no-error statement fails instead of scoring 0.
    """
    lines, headers, no_error = _scan_mqm(text, default=None)
    errors: list[MQMError] = []
    dropped: list[str] = []
    for level, body in lines:
        parts = _split_error(body)
        looks_like_error = parts is not None or body.lower().startswith(_CATEGORIES)
        if level is None or not looks_like_error:
            dropped.append(body)
            continue
        category, span = parts if parts else (body, None)
        severity = "critical" if "non-translation" in body.lower() else level
        errors.append(MQMError(severity, category, span, body))
    if not headers and not no_error:
        return _fail("no Critical:/Major:/Minor: header and no 'no-error' in the reply", dropped)
    return Parsed(errors, dropped=dropped)


def parse_mqm_ape_errors(text: object) -> Parsed[list[MQMError]]:
    """A GEMBA-MQM reply read the MQM-APE way, leniently (``parse: robust``): every
    ``category - "span"`` line is an error, lines before any header are minor, and there is
    no cap on the number of errors. Lines without a separator or a quoted span are dropped and
    reported in ``dropped``. Unlike the reference, headers must be headers (a quoted span
    mentioning "critical error" is no header), bullets and markdown are read, and a reply with
    no header, error or no-error statement fails instead of scoring 0."""
    lines, headers, no_error = _scan_mqm(text, default="minor")
    errors: list[MQMError] = []
    dropped: list[str] = []
    for level, body in lines:
        parts = _split_error(body)
        # as the reference: no quoted span, no error (each kept error costs three more calls)
        if parts is None or not parts[0] or not (_DOUBLE.search(body) or _SINGLE.search(body)):
            dropped.append(body)
            continue
        errors.append(MQMError(level or "minor", parts[0], parts[1], body))
    if not errors and not headers and not no_error:
        return _fail("no error lines, severity headers or 'no-error' in the reply", dropped)
    return Parsed(errors, dropped=dropped)


# ---------------------------------------------------------------- EAPrompt

_EA_HEADER = re.compile(r"^[\s>#*_•-]*(major|minor)\s+errors?[\s*_]*(?:\(\d+\)[\s*_]*)?"
                        r"(?P<colon>[:：])?(?P<rest>.*)$", re.I)
_EA_ITEM = re.compile(r"^\s*(?:\(\d{1,3}\)|\d{1,3}[.)]|[-*•·])\s*(?P<body>.+)$")


def parse_eaprompt_errors(text: object) -> Parsed[list[MQMError]]:
    """EAPrompt's itemized answer: items such as ``(1) “span” – Category`` under
    ``Major errors:`` and ``Minor errors:``. Counting the items is the cheap alternative to
    the second (counting) call. Lines under a header that are not items are dropped."""
    errors: list[MQMError] = []
    dropped: list[str] = []
    lines, headers, no_error = _scan_sections(text, _EA_HEADER, None, strip_bullets=False)
    for level, line in lines:
        item = _EA_ITEM.match(line)
        quoted = re.match(r"[\"“”„«‘'`](.+?)[\"“”»’'`]\s*(.*)$", item.group("body") if item else line)
        if level is None or (item is None and quoted is None):
            dropped.append(line)
            continue
        body = item.group("body").strip() if item else line
        if quoted:
            span: str | None = quoted.group(1)
            category = quoted.group(2).strip().lstrip("-–—:").strip(" '\"”")
        else:
            span, category = None, body
        errors.append(MQMError(level, category, span, line))
    if not headers and not no_error:
        return _fail("no 'Major errors:' / 'Minor errors:' section in the reply", dropped)
    return Parsed(errors, dropped=dropped)


_PAIR_LINE = re.compile(r"^[\s*_`\"'(\[]*(\d{1,6})\s*[,，;/]\s*(\d{1,6})[\s*_`\"')\].。]*$")
_LABELED = (re.compile(r"\bmajor\b[^\d\n]{0,30}?(?<!\d)(\d{1,4})(?!\d)", re.I),
            re.compile(r"\bminor\b[^\d\n]{0,30}?(?<!\d)(\d{1,4})(?!\d)", re.I))
_LABELED_AFTER = (re.compile(r"(?<!\d)(\d{1,4})\s+major\b", re.I),
                  re.compile(r"(?<!\d)(\d{1,4})\s+minor\b", re.I))


def parse_eaprompt_counts(text: object, max_count: int = 100) -> Parsed[tuple[int, int]]:
    """EAPrompt's counting answer, two numbers ``"major, minor"`` (``"2, 5"``).

    Read in order: the last line that is just ``x, x``; numbers labelled major and minor
    (``Major: 2``, ``2 major errors``); a reply holding exactly two numbers. Counts above
    ``max_count`` fail the parse.
    """
    t = _clean(text).replace("*", "")
    pair: tuple[int, int] | None = None
    for line in reversed(t.split("\n")):
        m = _PAIR_LINE.match(line.strip())
        if m:
            pair = int(m.group(1)), int(m.group(2))
            break
    if pair is None:
        for before, after in (_LABELED, _LABELED_AFTER):
            ma, mi = before.search(t), after.search(t)
            if ma and mi:
                pair = int(ma.group(1)), int(mi.group(1))
                break
    if pair is None:
        numbers = re.findall(r"(?<![\d.])\d{1,6}(?!\.?\d)", t)
        if len(numbers) == 2:
            pair = int(numbers[0]), int(numbers[1])
    if pair is None:
        return _fail("no 'major, minor' counts in the reply")
    if max(pair) > max_count:
        return _fail(f"counts {pair[0]}, {pair[1]} exceed {max_count}")
    return Parsed(pair)


# ---------------------------------------------------------------- GEMBA-DA

_OUT_OF = re.compile(r"(\d)\s*(?:/|out\s+of|of)\s*100\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w]|\.\d)")


def parse_da_score(text: object, low: float = 0, high: float = 100) -> Parsed[float]:
    """A GEMBA-DA reply: exactly one number, within ``[low, high]``
    (as ``gemba/prompt.py``'s ``validate_number``; ``85/100`` and ``["85"]`` are accepted)."""
    t = _OUT_OF.sub(r"\1", _clean(text).replace("*", ""))
    numbers = _NUMBER.findall(t)
    if len(numbers) != 1:
        return _fail(f"expected exactly one number, found {len(numbers)}")
    value = float(numbers[0])
    if not low <= value <= high:
        return _fail(f"{numbers[0]} is outside [{low:g}, {high:g}]")
    return Parsed(value)


# ---------------------------------------------------------------- pairwise A/B verdicts

# The letter itself is case-sensitive (a lowercase "a" is an article); ASCII look-arounds
# instead of \\b so that "翻译B更好" still reads as B.
_L = r"(?<![A-Za-z0-9])(?-i:(?P<x>[AB]))(?![A-Za-z0-9'’])"
_WHO = (r"(?:(?:the\s+)?(?:translation|option|version|candidate|übersetzung|traduction|"
        r"traducción|перевод|翻译|译文|选项|候选)\s*[\"'“«(\[]?\s*|[\"'“«(\[]\s*)?" + _L)
_KEY = (r"(?:(?:final\s+)?answer|verdict|choice|output|result|antwort|réponse|respuesta|ответ|"
        r"答案|回答|结论|选择)")
_BARE = re.compile(rf"^(?:{_KEY}(?:\s*(?:is|[:：]))?\s*)?{_WHO.replace('(?-i:', '(?:')}"
                   r"\s*[\"'”»)\]]?\s*[.。!！]?$", re.I)
_NOT = r"(?:(?!not\b|never\b)\w+\s+){0,2}?"
_FOR = [  # the letter named is the better one
    rf"{_WHO}\s+(?:is|seems|appears|reads|sounds|would\s+be)\s+{_NOT}"
    r"(?:better|superior|preferable|preferred|best|more\s+\w+|closer|correct)",
    rf"(?:better|best|preferred|superior|answer|choice|verdict)(?:\s+(?:translation|option|one|choice))?"
    rf"(?:\s+is|\s+would\s+be|\s*[:：])\s*{_WHO}",
    rf"(?:prefer|choose|chose|pick|select|go\s+with|recommend|vote\s+for)\s+{_WHO}",
    rf"{_KEY}\s*(?:[:：]|是|为)\s*{_WHO}",
    rf"{_WHO}\s*(?:更好|更佳|较好|更准确|更优|更合适|更自然|更流畅|更贴切|胜出|ist\s+besser|"
    r"est\s+meilleure?|es\s+mejor|лучше)",
    rf"(?:选择|选|我选|应选)\s*{_WHO}",
]
_AGAINST = [  # the letter named is the worse one
    rf"{_WHO}\s+(?:is|seems|appears|reads|sounds)\s+{_NOT}(?:worse|inferior|less\s+\w+)",
    rf"(?<!not )(?<!n't )(?:better|superior|preferable|more\s+\w+)\s+than\s+{_WHO}",
    rf"{_WHO}\s+(?:is|was)\s+not\s+(?:\w+\s+)?(?:better|as\s+good|superior|preferable)",
    rf"{_WHO}\s*(?:更差|较差|不如)",
]
_FOR_RE = [re.compile(p, re.I) for p in _FOR]
_AGAINST_RE = [re.compile(p, re.I) for p in _AGAINST]
_MENTION = re.compile(r"(?:translations?|options?|übersetzung|traduction|traducción|перевод|翻译|"
                      r"译文|选项)\s*[\"'“]?(?P<x>[AB])(?![A-Za-z0-9])", re.I)
_TIE = re.compile(r"\b(?:neither|tie|equally|same\s+quality|no\s+difference|both\s+(?:are|translations))\b"
                  r"|两者|都一样|同样", re.I)
_LONE = re.compile(r"(?<![A-Za-z0-9'])([AB])(?![A-Za-z0-9'])")
_ARTICLE = re.compile(r"A\s+(?!is\b|was\b|seems\b|has\b|wins\b|reads\b|sounds\b)[a-z]")


def _verdict_in(t: str) -> str | None:
    found = {m.group("x").upper() for r in _FOR_RE for m in r.finditer(t)}
    found |= {"B" if m.group("x").upper() == "A" else "A" for r in _AGAINST_RE for m in r.finditer(t)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None
    mentions = {m.group("x").upper() for m in _MENTION.finditer(t)}
    return mentions.pop() if len(mentions) == 1 else None


def parse_verdict(text: object) -> Parsed[str]:
    """A pairwise verifier's reply -> ``"A"`` or ``"B"``.

    Accepts the bare letter with any decoration (``**B**``, ``(A)``, ``Answer: "B"``,
    ``Translation A``), then the first line, then phrases such as ``A is better``,
    ``The better translation is B``, ``B is better than A``, ``翻译B更好``, ``答案是A``,
    ``Übersetzung B ist besser``; contradictory phrases fail rather than guess. As a last
    resort a lone capital letter (not the article "A") decides when only one letter occurs.
    """
    t = re.sub(r"[*_`#]+", "", _clean(text)).strip()
    if not t:
        return _fail("empty reply")
    first = next((ln.strip() for ln in t.split("\n") if ln.strip()), "")
    for scope in (t, first):
        m = _BARE.match(scope)
        if m:
            return Parsed(m.group("x").upper())
    for scope in (first, t):
        v = _verdict_in(scope)
        if v is not None:
            return Parsed(v)
    if _TIE.search(t):
        return _fail("no preference between A and B")
    lone = {m.group(1) for m in _LONE.finditer(t) if not _ARTICLE.match(t, m.start())}
    if len(lone) == 1:
        return Parsed(lone.pop())
    return _fail("no single A/B verdict in the reply")


# ---------------------------------------------------------------- post-edits

_CORRECTED = re.compile(r"corrected\s+translation(?:\s+is)?[\s*_]*(?:[:：][\s*_]*)?", re.I)
_QUOTES = "\"'“”„«»「」『』"


def parse_post_edit(text: object) -> Parsed[str]:
    """An automatic post-edit reply -> the corrected translation.

    As MQM-APE (``module_ape.response2ape_translation``): the text after
    ``Corrected Translation:`` (or, when nothing follows it, the text before it up to
    ``--``), else the whole reply; then its first non-empty line without quotes.
    """
    t = _clean(text)
    m = _CORRECTED.search(t)
    if m:
        after = t[m.end():].strip()
        t = after if after else t[: m.start()].split("--")[0]
    line = next((ln.strip() for ln in t.split("\n") if ln.strip()), "")
    line = line.strip("*_ ").strip(_QUOTES).strip()
    if not line:
        return _fail("no corrected translation in the reply")
    return Parsed(line)


__all__ = ["MQMError", "ParseStatus", "Parsed", "parse_da_score", "parse_eaprompt_counts",
           "parse_eaprompt_errors", "parse_gemba_mqm", "parse_mqm_ape_errors", "parse_post_edit",
           "parse_verdict"]

"""Reference-parity parsers: each reads a judge's reply exactly as the paper's own code does,
so that ``parse: reference`` reproduces the paper's numbers. Facts read from:

- GEMBA (MicrosoftTranslator/GEMBA): ``gemba/gemba_mqm_utils.py`` ``parse_mqm_answer`` and
  ``gemba/prompt.py`` ``validate_number``; the API layer strips the reply first (``gpt_api.py``).
- MQM-APE (Coldmist-Lu/MQM_APE): ``module_evaluator.error_text2dict``,
  ``module_ape.response2ape_translation``, ``module_verifier.verifier_pairwise``; every reply is
  first cut at the first ``<|eot_id|>`` (``utils.truncate_response``).
- EAPrompt (Coldmist-Lu/ErrorAnalysis_Prompt): the repository ships no parsing code; its
  counting prompt demands exactly ``"x, x"`` and its demonstrations itemize errors as
  ``(n) "span" - Category`` under ``Major errors:`` / ``Minor errors:``; those two formats are the
  reference rule.

Where the reference code would crash (an empty verifier reply, ``[""]`` as a DA answer) the
parse fails instead. Where it silently scores an unreadable reply (GEMBA-MQM and MQM-APE give 0
to a reply without any severity header), the parse succeeds as the reference does and says so
in ``notes``, so that nothing is scored without a trace.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .parsers import MQMError, Parsed, _fail

_LEVELS = ("critical", "major", "minor")
_GEMBA_CLASSES = ("accuracy", "fluency", "locale convention", "style", "terminology", "non-translation",
                  "other")
_SILENT_ZERO = "no severity header, error line or no-error statement: the reference scores this reply 0"


def _display(line: str) -> tuple[str, str | None]:
    """Category and span for the record only (the reference scores by counting lines)."""
    category = line.split(" - ")[0] if " - " in line else line
    quoted = re.search(r'["”](.*?)["”]', line)
    return category.strip(), quoted.group(1) if quoted else None


# ---------------------------------------------------------------- GEMBA-MQM

def _gemba_json(x: str) -> dict[str, Any]:
    """The ``{"improved translation": ..., "errors": ...}`` reply form (``parse_broken_json``)."""
    try:
        data = json.loads(x)
        return data.get("errors", {}) if isinstance(data, dict) else {}
    except ValueError:
        pass
    errors: dict[str, list[Any]] = {}
    if '"errors": ' not in x or "improved translation" not in x:
        return errors
    parts = x.split('", "errors": ')
    if len(parts) != 2:
        return errors
    tail = parts[1][:-1]
    try:
        loaded = json.loads(tail)
        return loaded if isinstance(loaded, dict) else {}
    except ValueError:
        last = None  # just count "class" keys after each severity word, as GEMBA does
        for word in re.findall(r"\b\w+\b", tail.lower()):
            if word in _LEVELS:
                last = word
            elif last is not None and word == "class":
                errors.setdefault(last, []).append({"class": "other"})
    return errors


def parse_gemba_mqm_reference(text: object) -> Parsed[list[MQMError]]:
    """GEMBA's ``parse_mqm_answer``: the reply is lower-cased and read line by line; only a line
    that is exactly ``critical:``/``major:``/``minor:`` sets the severity; lines containing
    ``no-error``/``no error`` and empty lines are skipped; every other line under a header is an
    error (prose and ``none`` included); lines before any header are dropped; a line mentioning
    ``non-translation`` is critical. Never fails on text: a reply without headers scores 0."""
    if text is None:
        return _fail("no reply")
    x = str(text).strip()
    errors: list[MQMError] = []
    dropped: list[str] = []
    if x.startswith('{"improved translation"'):
        found = _gemba_json(x)
        for level in _LEVELS:
            for e in found.get(level, []) or []:
                line = json.dumps(e, ensure_ascii=False)
                errors.append(MQMError(level, str(e.get("class", "")) if isinstance(e, dict) else line, None, line))
        return Parsed(errors)
    by_level: dict[str, list[MQMError]] = {lv: [] for lv in _LEVELS}
    level: str | None = None
    seen = False
    for raw in x.lower().split("\n"):
        line = raw.strip()
        if "no-error" in line or "no error" in line or line == "":
            seen = seen or line != ""
            continue
        if line in ("critical:", "major:", "minor:"):
            level, seen = line[:-1], True
            continue
        if level is None:
            dropped.append(line)
            continue
        severity = "critical" if "non-translation" in line else level
        category, span = _display(line)
        by_level[severity].append(MQMError(severity, category, span, line))
    errors = [e for lv in _LEVELS for e in by_level[lv]]
    notes = [] if seen else [_SILENT_ZERO]
    return Parsed(errors, dropped=dropped, notes=notes)


# ---------------------------------------------------------------- GEMBA-DA

def parse_da_reference(text: object, low: float = 0, high: float = 100) -> Parsed[float]:
    """GEMBA's ``validate_number``: the integers in the reply (``\\d+``); exactly one is the score;
    else a reply that is exactly ``['85']`` or ``85/100``; then ``low <= score <= high``. So
    ``85.5`` fails (two numbers) and ``-5`` reads as 5."""
    if text is None:
        return _fail("no reply")
    answer = str(text).strip()
    numbers = re.findall(r"\d+", answer)
    value: int | None = None
    if len(numbers) == 1:
        value = int(numbers[0])
    elif re.match(r"^\[['\"][0-9]*['\"]\]$", answer) and answer[2:-2]:
        value = int(answer[2:-2])
    elif re.match(rf"^[0-9]*/{high:g}$", answer) and answer.split("/")[0]:
        value = int(answer.split("/")[0])
    if value is None:
        return _fail(f"expected exactly one integer, found {len(numbers)}")
    if not low <= value <= high:
        return _fail(f"{value} is outside [{low:g}, {high:g}]")
    return Parsed(float(value))


# ---------------------------------------------------------------- MQM-APE

def _cut_eot(text: str) -> str:
    return text.split("<|eot_id|>")[0]


def parse_mqm_ape_reference(text: object) -> Parsed[list[MQMError]]:
    """MQM-APE's ``error_text2dict``: a line *containing* ``critical:``/``critical error`` (then
    major, minor) switches the severity (default minor) and is not itself an error; ``no-error``
    lines are skipped; a line without ``" - "`` or without a span in ``"..."``/``”...”`` is
    dropped; the category is the text before the first ``" - "`` and the span the first
    non-greedy double-quoted match (an apostrophe never ends it)."""
    if text is None:
        return _fail("no reply")
    by_level: dict[str, list[MQMError]] = {lv: [] for lv in _LEVELS}
    dropped: list[str] = []
    level, seen = "minor", False
    for line in _cut_eot(str(text)).split("\n"):
        low = line.lower()
        switched = next((lv for lv in _LEVELS if f"{lv}:" in low or f"{lv} error" in low), None)
        if switched:
            level, seen = switched, True
            continue
        if "no-error" in low or "no error" in low:
            seen = True
            continue
        match = re.search(r'["”](.*?)["”]', line) if " - " in line else None
        if match is None:
            if line.strip():
                dropped.append(line)
            continue
        by_level[level].append(MQMError(level, line.split(" - ")[0], match.group(1), line))
    errors = [e for lv in _LEVELS for e in by_level[lv]]
    notes = [] if seen or errors else [_SILENT_ZERO]
    return Parsed(errors, dropped=dropped, notes=notes)


def parse_post_edit_reference(text: object) -> Parsed[str]:
    """MQM-APE's ``response2ape_translation``: after ``corrected translation`` (found
    case-insensitively; the 22 characters of ``corrected translation:`` are skipped whatever
    they are), else before it up to ``--`` when nothing follows, else the whole reply; then its
    first line without surrounding ``"``. Never fails: an empty post-edit is verified as is."""
    if text is None:
        return _fail("no reply")
    response = _cut_eot(str(text))
    position = response.lower().find("corrected translation")
    if position != -1:
        result = response[position + len("corrected translation:"):].strip()
        if result == "":
            result = response[:position].split("--")[0].strip()
    else:
        result = response.strip()
    return Parsed(result.split("\n")[0].strip('"'))


def _paircheck(text: str, a_key: str, b_key: str) -> str | None:
    a, b = text.lower().find(a_key), text.lower().find(b_key)
    if a == -1 and b == -1:
        return None
    if b == -1 or (a != -1 and a < b):
        return "A"
    return "B"


def parse_verdict_reference(text: object) -> Parsed[str]:
    """MQM-APE's ``verifier_pairwise``: the non-empty lines joined; exactly ``A``/``B``; else the
    first of ``translation a``/``translation b`` (then ``translations a``, ``a:``, ``:a``,
    ``"a"``, ``option a`` pairs) to occur; else more ``"A "``/``" A"`` than B; else ``B``. Every
    reply gets a verdict except an empty one (where the reference crashes)."""
    if text is None:
        return _fail("no reply")
    lines = [r.strip() for r in _cut_eot(str(text)).split("\n") if r.strip() != ""]
    if not lines:
        return _fail("empty reply")
    t = "\n".join(lines)
    if t in ("A", "B"):
        return Parsed(t)
    for a_key, b_key in (("translation a", "translation b"), ("translations a", "translations b"),
                         ("a:", "b:"), (":a", ":b"), ('"a"', '"b"'), ("option a", "option b")):
        found = _paircheck(t, a_key, b_key)
        if found:
            return Parsed(found)
    a_cnt = t.count("A ") + t.count(" A")
    b_cnt = t.count("B ") + t.count(" B")
    if a_cnt != b_cnt:
        return Parsed("A" if a_cnt > b_cnt else "B")
    # the reference compares find('A') and find('B') in the lower-cased text: both -1, so "B"
    return Parsed("B", notes=["no A/B indicator: the reference's fallback answers B"])


# ---------------------------------------------------------------- EAPrompt

_EA_COUNTS = re.compile(r"^(\d+),\s*(\d+)$")


def parse_eaprompt_counts_reference(text: object, max_count: int = 100) -> Parsed[tuple[int, int]]:
    """EAPrompt's counting answer in the format its prompt demands: ``x, x`` and nothing else."""
    if text is None:
        return _fail("no reply")
    m = _EA_COUNTS.match(str(text).strip())
    if m is None:
        return _fail("the reply is not 'x, x' (major, minor) as the EAPrompt count prompt demands")
    pair = int(m.group(1)), int(m.group(2))
    if max(pair) > max_count:
        return _fail(f"counts {pair[0]}, {pair[1]} exceed {max_count}")
    return Parsed(pair)


_EA_HEAD = re.compile(r"^(major|minor) errors:", re.I)
_EA_ITEM_REF = re.compile(r"^\(\d+\)\s*(.*)$")


def parse_eaprompt_errors_reference(text: object) -> Parsed[list[MQMError]]:
    """EAPrompt's itemized errors in its demonstrations' format: lines ``(n) ...`` under the
    line starting ``Major errors:`` / ``Minor errors:``; a header line with text after the
    colon (``None``) holds no item. A reply with neither header fails."""
    if text is None:
        return _fail("no reply")
    errors: list[MQMError] = []
    dropped: list[str] = []
    level: str | None = None
    seen = False
    for raw in str(text).split("\n"):
        line = raw.strip()
        head = _EA_HEAD.match(line)
        if head:
            level, seen = head.group(1).lower(), True
            continue
        item = _EA_ITEM_REF.match(line)
        if item is None or level is None:
            if line:
                dropped.append(line)
            continue
        body = item.group(1)
        quoted = re.match(r'[“"](.*?)[”"]\s*[-–—]?\s*(.*)$', body)
        span, category = (quoted.group(1), quoted.group(2).strip()) if quoted else (None, body)
        errors.append(MQMError(level, category, span, line))
    if not seen and not re.search(r"\bno (?:major |minor )?errors?\b", str(text), re.I):
        return _fail("no 'Major errors:' / 'Minor errors:' section in the reply", dropped)
    return Parsed(errors, dropped=dropped)


__all__ = ["parse_da_reference", "parse_eaprompt_counts_reference", "parse_eaprompt_errors_reference",
           "parse_gemba_mqm_reference", "parse_mqm_ape_reference", "parse_post_edit_reference",
           "parse_verdict_reference"]

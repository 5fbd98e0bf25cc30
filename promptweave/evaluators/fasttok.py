r"""Exact re-implementations of sacreBLEU's ``13a`` and ``zh`` tokenizers, as token lists.

sacreBLEU's ``TokenizerRegexp`` applies four regular expressions to every line; two of them
(``([^0-9])([\.,])`` and ``([\.,])([^0-9])``) try a match at every character and, with the first
one's padding of spaces, cost more than all of BLEU's n-gram counting. Here the first rule leaves
spaces alone (see ``_PAD``), the ``[.,]`` rules visit only the ``.`` and ``,`` positions, and the
last rule runs only when a ``-`` is present. ``tests/evaluators/test_faststats.py`` compares the
tokens with sacreBLEU's on edge cases, generated text and WMT22 data.
"""

from __future__ import annotations

import re

_DIGITS = frozenset("0123456789")
_DOT_COMMA = re.compile(r"[.,]")
# sacreBLEU's first 13a rule pads every char of this class with spaces; it includes the space
# itself, which only lengthens runs of spaces, which no later rule can tell apart (each of them
# matches two adjacent characters, and a space is never the shared character of two overlapping
# matches) and the final split() removes. Leaving the space out makes the rule ~10x cheaper.
_PAD = re.compile(r"[\{-\~\[-\`!-\&\(-\+\:-\@\/]")
_DIGIT_DASH = re.compile(r"([0-9])(-)")


def _pad(m: re.Match[str]) -> str:
    return f" {m.group()} "


def _split_dot_comma(line: str) -> str:
    """sacreBLEU's ``([^0-9])([\\.,]) -> '\\1 \\2 '`` then ``([\\.,])([^0-9]) -> ' \\1 \\2'``.

    A match of either rule is two adjacent characters, one of them ``.`` or ``,``, so the
    candidates are found from those positions only; ``re.sub`` takes the leftmost match, then
    searches again after its end, which is what ``nxt`` enforces here."""
    pos = [m.start() for m in _DOT_COMMA.finditer(line)]
    if not pos:
        return line
    # rule 2: a non-digit, then . or ,
    out: list[str] = []
    last = nxt = 0
    for j in pos:
        i = j - 1
        if i < nxt or line[i] in _DIGITS:
            continue
        out += (line[last:i], line[i], " ", line[j], " ")
        last = nxt = j + 1
    if out:
        out.append(line[last:])
        line = "".join(out)
        pos = [m.start() for m in _DOT_COMMA.finditer(line)]
    # rule 3: . or , then a non-digit
    out = []
    last = nxt = 0
    end = len(line) - 1
    for j in pos:
        if j < nxt or j >= end or line[j + 1] in _DIGITS:
            continue
        out += (line[last:j], " ", line[j], " ", line[j + 1])
        last = nxt = j + 2
    if out:
        out.append(line[last:])
        line = "".join(out)
    return line


def _regexp_tokens(line: str) -> list[str]:
    """The tokens of sacreBLEU's ``TokenizerRegexp`` (the part shared by 13a and zh)."""
    line = _PAD.sub(_pad, line)
    if "." in line or "," in line:
        line = _split_dot_comma(line)
    if "-" in line:
        line = _DIGIT_DASH.sub(r"\1 \2 ", line)
    return line.split()


def tokens_13a(line: str) -> list[str]:
    """The tokens of sacreBLEU's ``Tokenizer13a`` (mteval-v13a) for ``line``."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return _regexp_tokens(f" {line} ")


_ZH: re.Pattern[str] | None = None


def _code_points(bounds: tuple[str, str]) -> tuple[int, int]:
    """The code points ``c`` with ``start <= c <= end`` as *string* comparisons, which is how
    ``_is_chinese_char`` tests them: two of sacreBLEU's bounds are two characters long
    (``u'\\u20000'`` is U+2000 then ``0``), and a single character equal to a longer bound's
    first one sorts before it."""
    start, end = bounds
    lo = ord(start[0]) + (len(start) > 1) if start else 0
    return lo, ord(end[0])


def tokens_zh(line: str) -> list[str]:
    """The tokens of sacreBLEU's ``TokenizerZh``: each Chinese character stands alone, the rest
    is tokenized as by 13a's regular expressions (without 13a's line clean-up)."""
    global _ZH
    if _ZH is None:
        from sacrebleu.tokenizers.tokenizer_zh import _UCODE_RANGES

        _ZH = re.compile("[" + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                                       for lo, hi in map(_code_points, _UCODE_RANGES)) + "]")
    return _regexp_tokens(_ZH.sub(_pad, line.strip()))

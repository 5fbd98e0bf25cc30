"""Secret values (API keys, tokens) and the one scrubber every outgoing text passes through.

A value is *registered* when promptweave reads it (``model.api_key_env``, ``OPENAI_API_KEY``, a
``${VAR}`` in a pipeline file) and, on first use, every environment variable whose name looks
secret (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``...). :func:`scrub` then replaces
each registered value in a text with ``***``, and also every run of at least
:data:`MIN_PIECE` characters copied from one: a server that echoes a key in part (``sk-...abcd7f3e``
or the middle of it) leaks no more than a few characters.

The roots where text leaves the process call :func:`scrub`: model-call error messages (the
runtime and backends), the run directory's writers (:mod:`promptweave.pipelines.store`),
``report.md``, and a log-record factory installed by :func:`install_logging` that scrubs every
log message and traceback before any handler sees it (``promptweave.*``, ``httpx``, ``openai``...).

``***`` holds no JSON-special character and no registered piece holds ``"`` or ``\\``, so
scrubbing JSON text leaves it valid JSON.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable

#: shortest value worth registering: shorter ones (``EMPTY``, ``none``) would scrub ordinary words
MIN_SECRET = 8
#: shortest run copied from a secret that is scrubbed on its own (a shorter one tells an attacker
#: little: 11 of a key's 40+ characters)
MIN_PIECE = 12
MASK = "***"

_SECRET_PARTS = {"key", "apikey", "token", "secret", "password", "passwd", "credential",
                 "credentials", "auth", "authorization", "pat"}
# values that are never secret whatever the variable name says
_NOT_SECRET = {"empty", "none", "null", "dummy", "changeme", "not-needed", "sk-no-key-required"}

# Searching: every run of MIN_PIECE characters of a segment holds one of its probes (pieces of
# _PROBE characters every _STRIDE characters, since _PROBE + _STRIDE - 1 == MIN_PIECE), so a few
# C-speed str.find calls per secret replace a regex tried at every position of the text (25x).
_PROBE = 6
_STRIDE = MIN_PIECE - _PROBE + 1  # 7: a 51-character key is 7 probes, ~25 us per secret per KB of text

_lock = threading.Lock()
_values: set[str] = set()
_segments: list[tuple[str, list[tuple[int, str]]]] = []  # (segment, [(offset, probe), ...])
_env_scanned = False


def is_secret_name(name: str) -> bool:
    """``api_key``, ``OPENAI_API_KEY``, ``hf_token``, ``client_secret``... but not ``max_tokens``."""
    lowered = name.lower()
    parts = set(re.split(r"[_\-.]+", lowered))
    return bool(parts & _SECRET_PARTS) or lowered.endswith(("key", "token", "secret", "password"))


def register(value: object) -> None:
    """Treat ``value`` (a string; anything else is ignored) as a secret from now on."""
    if not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < MIN_SECRET or value.lower() in _NOT_SECRET or value in _values:
        return
    with _lock:
        _values.add(value)
        # JSON text writes a quote or backslash escaped; segments never hold one, so a scrub can
        # never break an escape sequence
        for segment in re.split(r'["\\\s]+', value):
            if len(segment) >= MIN_PIECE and all(seg != segment for seg, _ in _segments):
                probes = [(i, segment[i:i + _PROBE]) for i in range(0, len(segment) - _PROBE + 1, _STRIDE)]
                _segments.append((segment, probes))


def register_env(names: Iterable[str] | None = None) -> None:
    """Register the values of ``names``, or (by default) of every variable whose name looks secret."""
    global _env_scanned
    if names is None:
        _env_scanned = True
        names = [n for n in os.environ if is_secret_name(n)]
    for name in names:
        register(os.environ.get(name))


def registered() -> int:
    """How many secret values are registered (for tests and diagnostics; never the values)."""
    _ensure_env()
    return len(_values)


def _ensure_env() -> None:
    if not _env_scanned:
        register_env()


def scrub(text: str) -> str:
    """``text`` with every registered secret, and every run of :data:`MIN_PIECE` or more
    characters copied from one, replaced by ``***``."""
    _ensure_env()
    if not _segments or not text:
        return text
    spans: list[tuple[int, int]] = []
    for segment, probes in list(_segments):
        for offset, probe in probes:
            at = text.find(probe)
            while at >= 0:
                a, b = at, at + _PROBE
                s_a, s_b = offset, offset + _PROBE
                while a > 0 and s_a > 0 and text[a - 1] == segment[s_a - 1]:
                    a, s_a = a - 1, s_a - 1
                while b < len(text) and s_b < len(segment) and text[b] == segment[s_b]:
                    b, s_b = b + 1, s_b + 1
                if b - a >= MIN_PIECE:
                    spans.append((a, b))
                at = text.find(probe, at + 1)
    if not spans:
        return text
    spans.sort()
    out, last = [], 0
    for start, end in spans:
        if end <= last:
            continue
        if start < last:  # overlaps the span just masked: extend it, with no second ***
            last = end
            continue
        out.append(text[last:start])
        out.append(MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


def scrub_any(value: object) -> object:
    """:func:`scrub` applied to every string inside lists, tuples and dict values."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_any(v) for v in value)
    return value


class ScrubFilter(logging.Filter):
    """Scrubs a record's message, arguments, traceback and stack text in place (for handlers or
    loggers that do not go through :func:`install_logging`'s record factory)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


def _scrub_record(record: logging.LogRecord) -> None:
    if getattr(record, "_pw_scrubbed", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is the logging module's to report
        return
    record.msg, record.args = scrub(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._pw_scrubbed = True


_installed = False


def install_logging() -> None:
    """Scrub every log record of this process as it is made (idempotent).

    A filter on a logger only sees records logged to that very logger, not to its children, and
    a filter on a handler misses handlers added later (``logging.basicConfig`` in a user's
    script); the record factory sees them all. The :class:`ScrubFilter` also goes on the
    ``promptweave``, ``httpx``, ``httpcore``, ``openai`` and ``aiohttp`` loggers, for a process
    whose factory is replaced after this call.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)
    for name in ("promptweave", "httpx", "httpcore", "openai", "aiohttp", "urllib3"):
        logging.getLogger(name).addFilter(ScrubFilter())


def _reset_for_tests() -> None:
    """Forget every registered value (tests only)."""
    global _env_scanned
    with _lock:
        _values.clear()
        _segments.clear()
        _env_scanned = False


install_logging()

"""What the test server does wrong, and how often (kept apart from the server module so that
``python -m promptweave.testing.server`` does not import the server twice)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    """What the server does. Shares are probabilities per request; they must sum to <= 1."""

    seed: int = 0
    reply: str = "{echo}"
    rules: str | None = None    # JSON [[regex, reply], ...] on the last user turn; first match wins
    delay: float = 0.0          # seconds before every answer
    p429: float = 0.0
    retry_after: float = 1.0    # seconds, sent as Retry-After with each 429
    p500: float = 0.0
    p503: float = 0.0
    reset: float = 0.0          # close the connection without a response (TCP RST)
    hang: float = 0.0           # answer only after hang_seconds (past any sane client timeout)
    hang_seconds: float = 30.0
    truncated: float = 0.0      # 200 with a body cut in half (invalid JSON)
    bad: float = 0.0            # 200 whose body is bad_body verbatim (HTML, null, a list, a wrong shape...)
    bad_body: str = "<html><body>502 Bad Gateway</body></html>"
    bad_type: str = "text/html"  # the content-type of a bad reply
    finish_reason: str = "stop"  # of every good reply ("length": a reply cut at max_tokens)
    retry_after_header: str | None = None  # the Retry-After header of a 429 verbatim ("nan", a date...)
    echo_key: bool = False      # error bodies (401, 429, 5xx) quote the Authorization key, as some servers do
    canned: str | None = None   # JSON [{"match": regex, "status": 200, "body": "...", "type": "text/html",
                                #        "headers": {"retry-after": "nan"}}, ...]: that answer verbatim for
                                # a request whose last user turn matches (first match wins; never drawn);
                                # "@FILE" reads that JSON from FILE (for bodies too long for a command line)
    fail_match: str | None = None  # regex on the last user turn: always fail_status, never drawn
    fail_status: int = 500

    def shares(self) -> list[tuple[str, float]]:
        return [("429", self.p429), ("500", self.p500), ("503", self.p503), ("reset", self.reset),
                ("hang", self.hang), ("truncated", self.truncated), ("bad", self.bad)]

    def check(self) -> None:
        total = sum(p for _, p in self.shares())
        if any(p < 0 for _, p in self.shares()) or total > 1.0 + 1e-9:
            raise ValueError(f"fault shares must be >= 0 and sum to <= 1, got {total:g}")
        canned = self.canned_answers()
        if not all(isinstance(c, dict) and "match" in c for c in canned):
            raise ValueError("canned must be a JSON list of objects with a 'match' regex")

    def canned_answers(self) -> list[dict[str, Any]]:
        """The ``canned`` list, read from its file when it is ``@FILE``."""
        if not self.canned:
            return []
        if self.canned.startswith("@"):
            with open(self.canned[1:], encoding="utf-8") as f:
                text = f.read()
        else:
            text = self.canned
        canned = json.loads(text)
        if not isinstance(canned, list):
            raise ValueError("canned must be a JSON list")
        return canned

"""What the test server does wrong, and how often (kept apart from the server module so that
``python -m promptweave.testing.server`` does not import the server twice)."""

from __future__ import annotations

from dataclasses import dataclass


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
    fail_match: str | None = None  # regex on the last user turn: always fail_status, never drawn
    fail_status: int = 500

    def shares(self) -> list[tuple[str, float]]:
        return [("429", self.p429), ("500", self.p500), ("503", self.p503), ("reset", self.reset),
                ("hang", self.hang), ("truncated", self.truncated)]

    def check(self) -> None:
        total = sum(p for _, p in self.shares())
        if any(p < 0 for _, p in self.shares()) or total > 1.0 + 1e-9:
            raise ValueError(f"fault shares must be >= 0 and sum to <= 1, got {total:g}")

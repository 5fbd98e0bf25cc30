"""MQM scoring presets: how a list of annotated errors becomes one segment score.

Every LLM judge in :mod:`promptweave.pipelines.steps.judges` turns its model's reply into
errors (a severity each, sometimes a weight) and hands them to one preset here, so the
constants of each paper live in one place:

- ``gemba_mqm``: 25 / 5 / 1 points for critical / major / minor; only the first 5 errors
  count (most severe first); the penalty is capped at 25.
- ``mqm_ape``: 25 / 5 / 1, each error multiplied by its verified keep value (0, 0.5 or 1);
  every error counts; capped at 25.
- ``eaprompt``: ``w_major`` (default 5) per major error, 1 per minor error; no cap.

Scores are penalties negated (higher is better, 0 means no error). A judge whose reply could
not be parsed has no score (``None``); it never goes through a preset and never becomes 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..registry import suggest

#: Severity names in the order GEMBA counts them.
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class MQMScoring:
    """A scoring preset.

    ``weights`` maps severity to penalty points. ``max_errors`` counts only the first N errors
    (most severe first, as GEMBA does); ``max_penalty`` caps the summed penalty, so the lowest
    score is ``-max_penalty``.
    """

    name: str
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"critical": 25.0, "major": 5.0, "minor": 1.0})
    max_errors: int | None = None
    max_penalty: float | None = None

    def penalty(self, errors: Iterable[str | tuple[str, float]]) -> float:
        """Summed penalty of ``errors``: severities, or ``(severity, weight)`` pairs where the
        weight (MQM-APE's keep value, 0..1) multiplies the severity's points."""
        items: list[tuple[str, float]] = []
        for e in errors:
            sev, mult = (e, 1.0) if isinstance(e, str) else (e[0], float(e[1]))
            if sev not in self.weights:
                raise ValueError(f"scoring '{self.name}' has no weight for severity {sev!r}; "
                                 f"known: {', '.join(self.weights)}")
            items.append((sev, mult))
        items.sort(key=lambda it: _RANK.get(it[0], len(_RANK)))  # stable: keeps reply order
        if self.max_errors is not None:
            items = items[: self.max_errors]
        total = sum(self.weights[sev] * mult for sev, mult in items)
        if self.max_penalty is not None:
            total = min(total, self.max_penalty)
        return float(total)

    def score(self, errors: Iterable[str | tuple[str, float]]) -> float:
        """The segment score: the negated :meth:`penalty` (0.0 when there is no error)."""
        total = self.penalty(errors)
        return -total if total else 0.0  # never -0.0 in results files

    def describe(self) -> dict[str, Any]:
        """The preset's constants, for the run manifest."""
        return {"name": self.name, "weights": dict(self.weights), "max_errors": self.max_errors,
                "max_penalty": self.max_penalty}


#: GEMBA-MQM (Kocmi & Federmann 2023): at most 5 errors, 25/5/1, capped at 25.
GEMBA_MQM = MQMScoring("gemba_mqm", max_errors=5, max_penalty=25.0)
#: MQM-APE (Lu et al. 2024): every error, weighted by its verified keep value, floored at -25.
MQM_APE = MQMScoring("mqm_ape", max_penalty=25.0)
#: EAPrompt (Lu et al. 2023): -(5 * major + minor), no cap.
EAPROMPT = MQMScoring("eaprompt", weights={"major": 5.0, "minor": 1.0})

PRESETS: dict[str, MQMScoring] = {p.name: p for p in (GEMBA_MQM, MQM_APE, EAPROMPT)}


def get_scoring(name: str) -> MQMScoring:
    """A preset by name (``gemba_mqm``, ``mqm_ape``, ``eaprompt``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown MQM scoring preset '{name}'{suggest(name, list(PRESETS))}; "
                         f"known: {', '.join(sorted(PRESETS))}") from None


def eaprompt_scoring(w_major: float = 5.0, w_minor: float = 1.0) -> MQMScoring:
    """The EAPrompt preset with a custom major-error weight."""
    if w_major == EAPROMPT.weights["major"] and w_minor == EAPROMPT.weights["minor"]:
        return EAPROMPT
    return MQMScoring("eaprompt", weights={"major": float(w_major), "minor": float(w_minor)})


def eaprompt_score(n_major: int, n_minor: int, w_major: float = 5.0) -> float:
    """EAPrompt's segment score from error counts: ``-(w_major * n_major + n_minor)``."""
    return eaprompt_scoring(w_major).score(["major"] * n_major + ["minor"] * n_minor)


__all__ = ["EAPROMPT", "GEMBA_MQM", "MQM_APE", "MQMScoring", "PRESETS", "SEVERITIES",
           "eaprompt_score", "eaprompt_scoring", "get_scoring"]

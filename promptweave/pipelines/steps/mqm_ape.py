"""MQM-APE (Lu et al. 2024, Coldmist-Lu/MQM_APE) as part of the ``mqm`` judge step.

GEMBA-MQM's errors are each post-edited, and each post-edit is verified pairwise in both orders
(or by CometKiwi); an error counts as much as fixing it helps: 1 when the post-edit wins both
orders, 0 when the original does, 0.5 otherwise (``module_verifier.py``). As the reference,
every post-edit, an empty one too, goes to the verifier.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...errors import PromptweaveError
from ...evaluators.mqm import MQM_APE, SEVERITIES
from ...prompts.parsers import MQMError
from .judge_base import finish


class MQMAPEMixin:
    """The MQM-APE pipeline of :class:`~promptweave.pipelines.steps.judges.MQMStep`."""

    config: Any
    _kiwi: Any
    _kiwi_lock: asyncio.Lock

    async def _mqm_ape(self, v: dict[str, Any]) -> dict[str, Any]:
        asked = await self._ask("evaluator", self._render("judges/gemba-mqm", v), self.parser("mqm_ape"))
        out: dict[str, Any] = {"method": "mqm_ape", "parse": self.config.parse, "verifier": self.config.verifier}
        if asked.parsed is not None:
            out["dropped"] = asked.parsed.dropped
        done = finish(out, asked)
        if done:
            return {**done, "errors": []}
        errors: list[MQMError] = asked.parsed.value  # type: ignore[union-attr,assignment]
        # every error is post-edited and verified independently: fan out
        results = await asyncio.gather(*(self._fix_and_verify(v, e, i) for i, e in enumerate(errors)))
        records = [rec for rec, _ in results]
        for _, traces in results:
            out["calls"].extend(traces)
        failed = [rec["error"] for rec in records if rec.get("error")]
        if not failed and self._kiwi is not None:
            failed = await self._kiwi_verify(v, records)
        out.update(errors=records, post_edits=[r.get("post_edit") for r in records],
                   votes=[r.get("votes") for r in records])
        if failed:
            return {**out, "value": None, "error": "; ".join(failed)}
        cut = [r["parse_error"] for r in records if r["status"] == "post_edit_failed"]
        if cut:
            return {**out, "value": None, "parse_status": "failed", "parse_error": "; ".join(cut)}
        sub_failures = sum(r["status"] != "ok" for r in records)
        return {**out,
                "value": MQM_APE.score((r["severity"], r["keep"]) for r in records),
                "value_unverified": MQM_APE.score(r["severity"] for r in records),
                "ape": best_post_edit(records, v["translation"]),
                "parse_status": "partial" if sub_failures else "ok"}

    async def _fix_and_verify(self, v: dict[str, Any], err: MQMError, i: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rec: dict[str, Any] = {**err.to_dict(), "post_edit": None, "votes": [], "keep": 0.5, "status": "ok"}
        pe_vars = {**v, "error_category": err.category, "error_span": err.span}
        pe = await self._ask(f"post_edit[{i}]", self._render("judges/mqm-ape-postedit", pe_vars),
                             self.parser("post_edit"))
        traces = list(pe.traces)
        rec["post_edit_raw"] = pe.text
        if pe.error:
            return {**rec, "error": pe.error}, traces
        if pe.parsed is not None and not pe.parsed.ok and pe.parsed.reason and "max_tokens" in pe.parsed.reason:
            # a cut post-edit is no post-edit: the row fails visibly rather than guess a weight
            return {**rec, "status": "post_edit_failed", "parse_error": pe.parsed.reason}, traces
        # as MQM-APE: whatever the reply gave (an empty post-edit too) goes to the verifier
        post_edit = pe.parsed.value if pe.parsed is not None and pe.parsed.ok else ""
        if not post_edit:
            rec["status"] = "post_edit_empty"
        rec["post_edit"] = post_edit
        if self._kiwi is not None:
            return rec, traces  # verified in one CometKiwi batch once every post-edit is in
        orders = [("original", "post_edit", v["translation"], post_edit),
                  ("post_edit", "original", post_edit, v["translation"])]
        asked = await asyncio.gather(*(
            self._ask(f"verify[{i}].{k}", self._render("judges/mqm-ape-verify",
                                                       {**v, "translation_a": a, "translation_b": b}),
                      self.parser("verdict"))
            for k, (_, _, a, b) in enumerate(orders, 1)))
        winners: list[str | None] = []
        for (name_a, name_b, _, _), ans in zip(orders, asked):
            traces.extend(ans.traces)
            if ans.error:
                return {**rec, "error": ans.error}, traces
            verdict = ans.parsed.value if ans.parsed else None
            winner = {"A": name_a, "B": name_b}.get(verdict or "")
            winners.append(winner)
            rec["votes"].append({"a": name_a, "b": name_b, "verdict": verdict, "winner": winner, "raw": ans.text})
        if None in winners:
            rec["status"] = "verdict_failed"
        # MQM-APE (module_verifier.py): the post-edit wins both orders -> the error was real (1);
        # the original wins both -> the "error" was not one (0); anything else is a tie (0.5)
        rec["keep"] = 1.0 if winners == ["post_edit"] * 2 else 0.0 if winners == ["original"] * 2 else 0.5
        return rec, traces

    async def _kiwi_verify(self, v: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
        edited = [r for r in records if r["post_edit"] is not None]
        if not edited:
            return []
        hyps = [v["translation"]] + [r["post_edit"] for r in edited]
        try:
            async with self._kiwi_lock:
                result = await asyncio.to_thread(self._kiwi.score, hyps, None, [v["source"]] * len(hyps))
        except PromptweaveError:
            raise
        except Exception as exc:  # noqa: BLE001 - a scoring crash fails the row visibly
            return [f"cometkiwi: {type(exc).__name__}: {exc}"]
        base, scores = result.segments[0], result.segments[1:]
        if base is None:
            return ["cometkiwi gave no score for the translation"]
        t = self.config.kiwi_threshold
        for rec, s in zip(edited, scores):
            rec["votes"] = [{"cometkiwi_translation": base, "cometkiwi_post_edit": s}]
            if s is None:
                rec["status"] = "verdict_failed"
            else:
                rec["keep"] = 1.0 if s - base > t else 0.0 if base - s > t else 0.5
                rec["cometkiwi_gain"] = s - base
        return []


def best_post_edit(records: list[dict[str, Any]], translation: str) -> str:
    """The best verified post-edit: among those that beat the original outright (keep 1: both
    pairwise orders, or a CometKiwi gain above the threshold), the one with the highest gain,
    then of the most severe error. The original translation when none did: a tie is no proof
    that the edit helped."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    winners = [r for r in records if r["post_edit"] is not None and r["keep"] == 1.0]
    if not winners:
        return translation
    best = min(winners, key=lambda r: (-r.get("cometkiwi_gain", 0.0), rank[r["severity"]]))
    return str(best["post_edit"])


__all__ = ["MQMAPEMixin", "best_post_edit"]

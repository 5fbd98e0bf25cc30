"""The ``memory:`` block: update policy, hard budget, templates and which model updates."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MemoryConfig(BaseModel):
    """How a conversation's memory is kept.

    ``policy``: ``session_end`` (the paper's protocol: one update per finished session; a session
    ends on an explicit call or after ``idle_timeout`` seconds without a turn), ``every_n_turns``
    (an update once ``every_n_turns`` turns are not yet in the memory) or ``token_budget`` (once
    the turns not yet in the memory pass ``context_tokens``, all but the newest ``keep_turns`` are
    folded into it).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    policy: Literal["session_end", "every_n_turns", "token_budget"] = "session_end"
    idle_timeout: float | None = Field(1800.0, gt=0, description="seconds without a turn that end a session; "
                                                                  "null: only an explicit end")
    every_n_turns: int = Field(8, ge=1, description="turns (user + assistant) per update, for every_n_turns")
    keep_turns: int = Field(4, ge=0, description="newest turns token_budget leaves out of an update")
    context_tokens: int = Field(1500, ge=16, description="the reply's dialogue context budget (approx. tokens); "
                                                         "older turns of the session are dropped from the prompt")
    max_sentences: int = Field(20, ge=1, description="hard memory budget in sentences (the paper: 20)")
    max_memory_tokens: int | None = Field(None, ge=8, description="hard memory budget in tokens, besides sentences")
    compress_tries: int = Field(2, ge=0, description="model re-compressions of an over-budget memory before a cut")
    update_template: str = "rsum-update"
    respond_template: str = "rsum-respond"
    update_model: str = Field("default", description="named model for updates (models: ...), e.g. a cheaper one")
    update_retry_after: float = Field(30.0, gt=0, description="seconds before a failed update is tried again")


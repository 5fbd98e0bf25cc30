"""The ``executor:`` block of a pipeline file: where the rows run.

``executor: local`` (the default) runs them in this process; ``executor: {kind: ray, ...}`` sends
them to a pool of Ray actors, each holding a window of ``chunk_size`` rows. Neither changes what a
run computes, so the block is operational: it is not part of the run identity and switching it
resumes the same run directory.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ExecutorConfig(BaseModel):
    """How and where the rows of a run are executed."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster: 'auto' (the one started on this machine by "
                                "'ray start'), 'ray://HOST:10001', 'HOST:6379'; unset: start a private local Ray")
    actors: int = Field(1, ge=1, description="actors in the pool; each owns its own model runtimes")
    num_cpus: float = Field(1, ge=0, description="CPUs Ray reserves per actor")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor (1: one vLLM engine per GPU)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per actor")
    chunk_size: int = Field(32, ge=1, description="rows an actor holds at once, sent and returned in batches of "
                            "a quarter and refilled as they return: the most it runs at once, whatever the "
                            "pipeline's concurrency (an actor that dies costs at most this many calls again)")
    max_in_flight: int | None = Field(None, ge=1, description="chunk_size windows out at once over all actors "
                                      "(default: one per actor; more per actor widens each actor's window)")
    max_restarts: int = Field(3, ge=-1, description="times Ray restarts an actor that died (-1: always)")
    start_timeout: float = Field(300, gt=0, description="seconds to wait for the actors to be placed and built")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # ``executor: ray`` is ``executor: {kind: ray}``
        return {"kind": value} if isinstance(value, str) else value

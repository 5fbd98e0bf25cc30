"""The contract every model backend fulfils.

A backend turns chat messages into a :class:`Completion`. It knows nothing about retries,
caching, rate limits or accounting: :mod:`promptweave.models.runtime` wraps every backend
and owns those concerns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat turn. ``content`` is text, or a list of OpenAI-style content parts
    (``{"type": "text", ...}`` / ``{"type": "image_url", ...}``) for multimodal models."""

    role: Role
    content: str | list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}

    def approx_tokens(self) -> int:
        """A rough token count for rate limiting: characters / 4 for text, 1,000 per image
        (a base64 image's characters say nothing about its tokens)."""
        if isinstance(self.content, str):
            return len(self.content) // 4
        return sum(1000 if p.get("type") == "image_url" else len(str(p.get("text", ""))) // 4
                   for p in self.content if isinstance(p, dict))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(role=d["role"], content=d["content"])


# The ranges every OpenAI-compatible server documents; a value outside them is a config error
# at load time, never a request the server rejects (or, worse, accepts) for every row.
Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False,
                                     description="0 (greedy) to 2")]
MaxTokens = Annotated[int, Field(ge=1, le=1_000_000, strict=True, description="tokens per reply, >= 1")]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False, description="nucleus mass in (0, 1]")]
Seed = Annotated[int, Field(ge=-(2**63), lt=2**63, strict=True, description="an integer")]
Stop = Annotated[list[Annotated[str, Field(min_length=1, strict=True)]], Field(max_length=16)]


def _stop_list(value: Any) -> Any:
    # the OpenAI API takes one stop string or a list of them
    return [value] if isinstance(value, str) else value


class GenParams(BaseModel):
    """Sampling parameters. Temperature is first-class and defaults to 0 (greedy), as the
    MT prompting literature recommends for translation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Temperature = 0.0
    max_tokens: MaxTokens = 512
    top_p: TopP | None = None
    stop: Stop | None = None
    seed: Seed | None = None

    _stop = field_validator("stop", mode="before")(_stop_list)

    def sampling_kwargs(self) -> dict[str, Any]:
        """The OpenAI-style keywords every backend sends: temperature and max_tokens always,
        top_p/stop/seed when set."""
        out: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.top_p is not None:
            out["top_p"] = self.top_p
        if self.stop:
            out["stop"] = list(self.stop)
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def merged(self, **overrides: Any) -> GenParams:
        """These params with ``overrides`` (``None`` = keep), checked like the originals: an
        out-of-range override is a :class:`~promptweave.errors.ConfigError` naming the field."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        if not clean:
            return self
        try:
            return GenParams.model_validate({**self.model_dump(), **clean})
        except ValidationError as exc:
            from ..errors import ConfigError

            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{err['msg']} (got {err.get('input')!r:.60})", key=field) from None


@dataclass
class Completion:
    """What a backend returns for one request."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)


class BackendError(Exception):
    """A model call failed. ``retryable`` tells the runtime whether trying again can help;
    ``retry_after`` (seconds) is the server's own wish, when it said one. ``kind`` names the
    failure for the ledger and the runtime's circuit breaker: ``connect`` (no connection could be
    made: refused, unknown host), ``connection`` (one broke), ``timeout``, ``malformed`` (a reply
    of the wrong shape), ``refusal``, ``internal`` (a backend raised something unexpected)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.kind = kind


@runtime_checkable
class ChatModel(Protocol):
    """A model backend.

    ``identity`` names everything that changes the output for the same messages and params
    (backend, model, base_url, ...); it is part of the cache key and must never hold a secret.
    ``max_batch`` > 1 means the backend prefers whole batches through :meth:`complete_batch`
    (vLLM in-process); the runtime then groups concurrent requests for it. ``max_parallel``
    caps the calls in flight whatever ``max_concurrency`` says (1 for an in-process model that
    serves one call at a time), so that waiting in the backend's own queue never eats into a
    call's timeout.
    """

    identity: dict[str, Any]
    max_batch: int
    max_parallel: int | None

    async def complete(self, messages: list[Message], params: GenParams) -> Completion: ...

    async def complete_batch(
        self, batch: list[list[Message]], params: GenParams
    ) -> list[Completion | BackendError]: ...

    async def aclose(self) -> None: ...


class BaseChatModel:
    """Convenience base: a backend implements ``complete`` and optionally ``complete_batch``.

    ``default_concurrency`` replaces ``model.max_concurrency``'s default when the pipeline file
    does not set it (an in-process batch engine wants every row in flight). ``owns_timeout``
    tells the runtime not to cut a call off at ``model.timeout``: the backend applies it itself
    (an in-process engine cannot abandon a call, so it must not look abandoned)."""

    identity: dict[str, Any] = {}
    max_batch: int = 1
    max_parallel: int | None = None
    default_concurrency: int | None = None
    owns_timeout: bool = False

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        raise NotImplementedError

    async def complete_batch(
        self, batch: list[list[Message]], params: GenParams
    ) -> list[Completion | BackendError]:
        out: list[Completion | BackendError] = []
        for messages in batch:
            try:
                out.append(await self.complete(messages, params))
            except BackendError as exc:
                out.append(exc)
        return out

    async def aclose(self) -> None:
        return None


def backend_accepts_images(cfg: Any) -> bool | None:
    """Whether the backend a :class:`~promptweave.models.spec.ModelConfig` names can take images,
    decided before any backend is built: its factory module's ``accepts_images(cfg)``, or None
    (unknown: a plugin that does not say) when it has none."""
    import sys

    from . import backends

    factory = backends.get(cfg.backend)
    decide = getattr(sys.modules.get(getattr(factory, "__module__", ""), None), "accepts_images", None)
    return bool(decide(cfg)) if callable(decide) else None

"""The ``model:`` block of a pipeline file."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import GenParams, MaxTokens, Seed, Stop, Temperature, TopP, _stop_list


class Price(BaseModel):
    """Price in currency units per million tokens, for the cost line of the usage ledger."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class ModelConfig(BaseModel):
    """Which model to call and how. Backend-specific settings go under ``options``."""

    # no NaN or infinity anywhere: ``timeout: .nan`` would never fire, ``rpm: .inf`` means nothing
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    backend: str = Field("llamacpp", description="openai | llamacpp | vllm | langchain | scripted | a registered plugin")
    model: str = Field("default", description="model name, GGUF path, or 'module:Class' for langchain")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    # sampling
    temperature: Temperature = 0.0
    max_tokens: MaxTokens = 512
    top_p: TopP | None = None
    seed: Seed | None = None
    stop: Stop | None = Field(None, description="a stop string or a list of them")
    # runtime
    max_concurrency: int = Field(8, ge=1, strict=True)
    timeout: float = Field(120.0, gt=0, description="seconds per call")
    max_retries: int = Field(5, ge=0, strict=True, description="retries after the first attempt")
    circuit_breaker: int = Field(5, ge=0, strict=True, description="stop the run after this many connection "
                                 "attempts in a row fail (0: never); the run resumes where it stopped")
    backoff_base: float = Field(0.5, ge=0, description="first backoff in seconds, doubled per retry, jittered")
    backoff_max: float = Field(30.0, ge=0)
    retry_after_max: float = Field(300.0, ge=0, description="a longer Retry-After fails the call instead of "
                                                            "stalling its row")
    rpm: float | None = Field(None, gt=0, description="requests per minute limit")
    tpm: float | None = Field(None, gt=0, description="tokens per minute limit")
    cache: bool = True
    price: Price | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings")

    _stop = field_validator("stop", mode="before")(_stop_list)

    def gen_params(self) -> GenParams:
        return GenParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            top_p=self.top_p,
            seed=self.seed,
            stop=self.stop,
        )

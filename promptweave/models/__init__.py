"""Model backends behind one protocol, and the runtime that wraps them all."""

from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .base import BackendError, BaseChatModel, ChatModel, Completion, GenParams, Message
from .spec import ModelConfig, Price

BackendFactory = Callable[[ModelConfig], ChatModel]

#: name -> factory(ModelConfig) -> ChatModel. Third parties add ``promptweave.backends`` entry points.
backends: Registry[BackendFactory] = Registry("backend", "promptweave.backends")
backends.register("openai", "promptweave.models.openai_api:create")
backends.register("llamacpp", "promptweave.models.llamacpp:create")
backends.register("vllm", "promptweave.models.vllm_engine:create")
backends.register("langchain", "promptweave.models.langchain:create")
backends.register("scripted", "promptweave.models.scripted:create")


def create_backend(cfg: ModelConfig) -> ChatModel:
    return backends.get(cfg.backend)(cfg)


__all__ = [
    "BackendError", "BaseChatModel", "ChatModel", "Completion", "GenParams", "Message",
    "ModelConfig", "Price", "backends", "create_backend",
]

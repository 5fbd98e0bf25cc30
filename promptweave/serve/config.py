"""The ``promptweave serve`` / ``promptweave chat`` file: model(s), memory, store, server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..memory.config import MemoryConfig
from ..models.spec import ModelConfig
from ..yamlio import LocatedYAML, Path_, fmt_path

_FORBID = ConfigDict(extra="forbid", protected_namespaces=())


class ServerConfig(BaseModel):
    model_config = _FORBID

    host: str = Field("127.0.0.1", description="bind address; anything but loopback needs API keys")
    port: int = Field(8000, ge=0, le=65535)
    model_name: str = Field("promptweave-memory", description="the model id /v1/models lists")
    keys_env: str | None = Field("PROMPTWEAVE_API_KEYS", description="environment variable with comma-separated "
                                                                     "bearer keys (each its own namespace); "
                                                                     "null: no auth (loopback only)")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_tokens_limit: int = Field(4096, ge=1, description="largest max_tokens a client may ask for")
    idle_sweep_seconds: float = Field(30.0, gt=0, description="how often idle sessions are looked for")


class ServeConfig(BaseModel):
    model_config = _FORBID

    name: str = "chat"
    description: str = ""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="extra named models (memory.update_model)")
    memory: MemoryConfig = Field(default_factory=lambda: MemoryConfig())
    store: str = Field("sqlite:///promptweave-memory.db", description="sqlite:///FILE or postgresql://...")
    cache: str = Field("off", description="completion cache file, or off")
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())


@dataclass
class LoadedServeConfig:
    config: ServeConfig
    file: str
    base_dir: Path

    def error_at(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, key=fmt_path(path))


def load_serve_config(file: str | Path, overrides: list[str] | None = None) -> LoadedServeConfig:
    """Read and validate a serve file; errors name file:line and the key."""
    from ..config import _pydantic_error  # the pipeline file's error wording, reused
    from ..yamlio import apply_override

    p = Path(file)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("file does not exist; check the path", file=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not valid UTF-8; save the file as UTF-8", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file=str(p)) from None
    loc = LocatedYAML(text, str(p))
    data: Any = loc.data if loc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError("a serve file is a mapping with model, memory, store and server", file=str(p), line=1)
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        cfg = ServeConfig.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(loc, exc, ServeConfig, ()) from None
    names = {"default", *cfg.models}
    if cfg.memory.update_model not in names:
        raise ConfigError(f"no model named '{cfg.memory.update_model}'; define it under 'models:'", file=str(p),
                          line=loc.line_of(("memory", "update_model")), key="memory.update_model")
    return LoadedServeConfig(cfg, str(p), p.resolve().parent)

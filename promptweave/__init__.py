"""promptweave: declarative LLM pipelines for machine translation research and production.

The public API::

    from promptweave import load_config, run_pipeline
    summary = run_pipeline("configs/quickstart.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from .config import LoadedConfig, PipelineConfig, load_config  # noqa: E402
from .errors import ConfigError, DataError, PromptweaveError, TemplateError  # noqa: E402
from .models import GenParams, Message, ModelConfig  # noqa: E402


def run_pipeline(config: str | Path, overrides: list[str] | None = None, *, run_id: str | None = None,
                 retry_errors: bool = False, progress: bool = False, argv: list[str] | None = None,
                 overwrite: bool = False) -> Any:
    """Run a pipeline file from Python; returns the run summary (``.scores``, ``.ledger``, ``.run_dir``).
    ``overwrite`` lets a ``run_id`` whose run directory holds another config take it over."""
    import asyncio

    from .pipelines.engine import Engine, run_dir_for
    from .pipelines.finish import finish_run

    loaded = load_config(config, overrides)
    engine = Engine(loaded, run_dir_for(loaded, run_id), progress=progress)
    summary = asyncio.run(engine.run(retry_errors=retry_errors, overwrite=overwrite))
    finish_run(engine, summary, argv)
    return summary


__all__ = ["ConfigError", "DataError", "GenParams", "LoadedConfig", "Message", "ModelConfig",
           "PipelineConfig", "PromptweaveError", "TemplateError", "__version__", "load_config", "run_pipeline"]

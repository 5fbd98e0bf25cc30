"""promptweave: declarative LLM pipelines for machine translation research and production.

The public API::

    from promptweave import run_pipeline, arun_pipeline
    summary = run_pipeline("configs/quickstart.yaml")        # a script
    summary = await arun_pipeline("configs/quickstart.yaml")  # a notebook, or any running event loop

A pipeline is a file path, a ``dict`` with the file's keys, a :class:`PipelineConfig` or a
:class:`LoadedConfig` (from :func:`load_config`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

__version__ = "0.1.0"

from .errors import ConfigError, DataError, PromptweaveError, TemplateError  # noqa: E402

if TYPE_CHECKING:
    from .config import LoadedConfig, PipelineConfig, load_config
    from .models import GenParams, Message, ModelConfig
    from .pipelines.engine import RunSummary

# Imported on first use: ``promptweave run`` starts a supervisor process that needs none of them.
_LAZY = {"LoadedConfig": "config", "PipelineConfig": "config", "load_config": "config",
         "GenParams": "models", "Message": "models", "ModelConfig": "models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ConfigLike = Union[str, "os.PathLike[str]", dict[str, Any], "PipelineConfig", "LoadedConfig"]


def _loaded(config: ConfigLike, overrides: list[str] | None) -> LoadedConfig:
    """Any accepted form of a pipeline, validated, with ``overrides`` (``key.path=value``) applied."""
    import yaml

    from .config import LoadedConfig, PipelineConfig, load_config, load_config_text

    if isinstance(config, LoadedConfig) and not overrides:
        return config
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    if isinstance(config, LoadedConfig):
        data, name, base = config.raw, config.file, config.base_dir
    elif isinstance(config, PipelineConfig):
        data, name, base = config.model_dump(mode="json", exclude_unset=True), "<PipelineConfig>", Path.cwd()
    elif isinstance(config, dict):
        data, name, base = config, "<dict>", Path.cwd()
    else:
        raise TypeError(f"run_pipeline takes a path, a dict, a PipelineConfig or a LoadedConfig, "
                        f"not {type(config).__name__}")
    # through YAML text, so that a dict gets the same checks and line-numbered errors as a file
    plain = json.loads(json.dumps(data, default=str))
    text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
    return load_config_text(text, name, overrides, base_dir=base)


async def arun_pipeline(config: ConfigLike, overrides: list[str] | None = None, *, run_id: str | None = None,
                        retry_errors: bool = False, progress: bool = False, argv: list[str] | None = None,
                        on_start: Callable[[Path], None] | None = None, overwrite: bool = False) -> RunSummary:
    """Run a pipeline on the running event loop (``await`` it in a notebook); returns the summary.

    ``overrides`` are ``--set`` style assignments (``["data.limit=5"]``); ``run_id`` names the run
    directory; ``retry_errors`` re-runs only failed rows; ``on_start`` is called with the run
    directory before the first row; ``overwrite`` lets a ``run_id`` whose run directory holds
    another config take it over. The summary has ``.scores``, ``.ledger``, ``.run_dir``.
    """
    from .pipelines.engine import Engine, run_dir_for
    from .pipelines.finish import finish_run

    loaded = _loaded(config, overrides)
    engine = Engine(loaded, run_dir_for(loaded, run_id), progress=progress)
    if on_start is not None:
        on_start(engine.run_dir)
    summary = await engine.run(retry_errors=retry_errors, overwrite=overwrite)
    finish_run(engine, summary, argv)
    return summary


def run_pipeline(config: ConfigLike, overrides: list[str] | None = None, *, run_id: str | None = None,
                 retry_errors: bool = False, progress: bool = False, argv: list[str] | None = None,
                 on_start: Callable[[Path], None] | None = None, overwrite: bool = False) -> RunSummary:
    """Run a pipeline to its end and return the summary; the blocking twin of :func:`arun_pipeline`.

    Called where an event loop is already running (a notebook cell), it runs the pipeline on a
    private loop in a worker thread and blocks until it is done, instead of failing.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    coro = arun_pipeline(config, overrides, run_id=run_id, retry_errors=retry_errors, progress=progress,
                         argv=argv, on_start=on_start, overwrite=overwrite)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptweave-run") as pool:
        return pool.submit(asyncio.run, coro).result()


__all__ = ["ConfigError", "ConfigLike", "DataError", "GenParams", "LoadedConfig", "Message", "ModelConfig",
           "PipelineConfig", "PromptweaveError", "TemplateError", "__version__", "arun_pipeline", "load_config",
           "run_pipeline"]

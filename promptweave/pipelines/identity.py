"""What a run is, by content.

- The **config identity** is every setting of the effective config (after ``--set``, with
  defaults filled in) that decides which rows exist or what a row produces. Operational settings
  (``output``, ``cache``, ``concurrency``, retries, timeouts, rate limits, prices, ``metrics``
  and ``scoring``, which are recomputed from the rows at the end of every run) and credentials
  (any key naming an API key, token, secret or password) are left out. Its
  hash is the default run id, so editing a data or template file keeps the run directory.
- A **row fingerprint** hashes one row's key and fields with everything else that changes what
  the row produces: the row-level part of the config identity, the content of every file a step
  read in ``prepare()`` (:meth:`Step.fingerprint_inputs`) and the promptweave version. A stored
  row is resumed only when its fingerprint is unchanged; any other row runs again (the
  completion cache still answers identical requests for free).

``identity.json`` in the run directory keeps one hash per config leaf, never a value, so that a
``--run-id`` reused with another config is refused naming the keys that differ, and no secret
interpolated into the config is ever written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .rundir import RunDirError, read_small

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from .steps import Step

IDENTITY_FILE = "identity.json"
_OPERATIONAL = {"description", "output", "run_id", "cache", "concurrency", "executor", "metrics", "scoring", "steps"}
_MODEL_OPERATIONAL = {"max_concurrency", "timeout", "max_retries", "backoff_base", "backoff_max",
                      "retry_after_max", "rpm", "tpm", "cache", "price", "api_key_env"}
# data settings that pick rows and fill their fields: part of the run's identity, while each
# row's fingerprint sees their effect through the row's own fields
_ROW_SELECTION = ("data.path", "data.format", "data.files", "data.fields", "data.limit", "data.key",
                  "data.explode", "data.systems", "data.split", "data.hf_config")


# credentials never change what a model says: rotating one keeps the run, and no hash of one is
# written (a short secret's hash could be guessed back)
_SECRET_PARTS = ("api_key", "apikey", "token", "secret", "password", "passwd", "authorization", "credential")


def _is_secret(path: str) -> bool:
    low = path.lower()
    return any(part in low for part in _SECRET_PARTS)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode("utf-8", "surrogatepass")).hexdigest()


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = obj


def config_leaves(loaded: LoadedConfig) -> dict[str, Any]:
    """The identity-bearing settings as ``{"model.temperature": 0.0, ...}`` (values in memory only)."""
    p = loaded.pipeline.model_dump(mode="json")
    for key in _OPERATIONAL:
        p.pop(key, None)
    for cfg in [p.get("model") or {}, *(p.get("models") or {}).values()]:
        for key in _MODEL_OPERATIONAL:
            cfg.pop(key, None)
    p["steps"] = [{"id": s.id, "model": s.model, s.kind: s.config.model_dump(mode="json")} for s in loaded.steps]
    out: dict[str, Any] = {}
    _flatten(p, "", out)
    return {k: v for k, v in out.items() if not _is_secret(k)}


@dataclass
class RunIdentity:
    """The fingerprints of one run, computed after the steps are prepared."""

    leaves: dict[str, str]  # config key -> hash of its value
    inputs: dict[str, dict[str, str]]  # step id -> {input name -> sha256}
    config: str = ""
    row_base: str = ""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, loaded: LoadedConfig, steps: list[Step]) -> RunIdentity:
        leaves = {k: sha(v)[:16] for k, v in config_leaves(loaded).items()}
        inputs = {s.id: dict(sorted(s.fingerprint_inputs().items())) for s in steps}
        row_leaves = {k: v for k, v in leaves.items() if not k.startswith(_ROW_SELECTION)}
        return cls(leaves, inputs, config=sha(leaves),
                   row_base=sha({"config": row_leaves, "inputs": inputs, "version": __version__}))

    @property
    def run_id(self) -> str:
        return self.config[:10]

    def row_fingerprint(self, key: str, fields: dict[str, Any]) -> str:
        return sha([self.row_base, key, fields])[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "promptweave": __version__, "config": self.config, "row_base": self.row_base,
                "inputs": self.inputs, "leaves": self.leaves}

    def check_against(self, run_dir: Path, *, overwrite: bool) -> None:
        """Refuse a run directory that holds another config (unless ``overwrite``); note the
        inputs that changed since its last run, whose rows will run again."""
        stored = read_identity(run_dir)
        if stored is None:
            return
        old_leaves = stored.get("leaves") if isinstance(stored.get("leaves"), dict) else {}
        if stored.get("config") != self.config:
            keys = sorted(k for k in set(old_leaves) | set(self.leaves) if old_leaves.get(k) != self.leaves.get(k))
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            if not overwrite:
                raise RunDirError(f"run directory {run_dir} holds a run of a different config ({shown or 'format'} "
                                  "differ); use another --run-id, or pass --overwrite to re-run the rows the "
                                  "change affects there")
            self.notes.append(f"--overwrite: the config changed ({shown}); rows it affects run again")
        old_inputs = stored.get("inputs") if isinstance(stored.get("inputs"), dict) else {}
        changed = [f"{step}: {name}" for step, files in self.inputs.items() for name, digest in files.items()
                   if isinstance(old_inputs.get(step), dict) and old_inputs[step].get(name) not in (None, digest)]
        if changed:
            self.notes.append("inputs changed since the last run (" + ", ".join(changed[:6])
                              + "); the rows they feed run again")


def read_identity(run_dir: Path) -> dict[str, Any] | None:
    """The stored identity, or None when absent or unreadable (then row fingerprints decide)."""
    raw = read_small(run_dir / IDENTITY_FILE)
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None

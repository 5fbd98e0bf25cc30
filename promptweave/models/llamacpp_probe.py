"""Can llama.cpp's default weight layout run on this machine? Ask a child process, once.

llama.cpp loads weights into "extra buffer types" by default: on x86-64 that means repacking them
for AMX int8 tiles when the CPU reports AMX, and other repacked layouts elsewhere. On some CPUs
(seen: a KVM Xeon guest with ``amx_int8``/``amx_tile``, llama-cpp-python 0.3.36 built natively,
the embedded Q4_K_M model) the first ``decode`` then dies with SIGSEGV, taking the whole process
with it; with ``llama_model_params.use_extra_bufts = False`` the same model runs fine.

A crash cannot be caught in-process, so :func:`resolve_extra_bufts` loads the model with the
default settings in a child (``python -m promptweave.models.llamacpp_probe MODEL``, a load and a
short decode). If the child dies by a signal, the model is loaded without extra buffer types. The
verdict is remembered per machine (CPU model and flags), llama.cpp build (llama-cpp-python
version and shared libraries) and model file in ``$PROMPTWEAVE_HOME/llamacpp-probe.json``, so the
probe costs one load per machine, build and model, and the fallback is announced once.
``model.options.extra_bufts: on|off`` skips the probe and forces either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .embedded import promptweave_home

PROBE_TIMEOUT_S = 300.0
_PROMPT = ("Translate the following German text into English.\n"
           "German: Der schnelle braune Fuchs springt über den faulen Hund, und alle sehen zu.\n"
           "English:")


def parse_setting(value: Any) -> str:
    """``auto`` | ``on`` | ``off`` from the option as written (YAML reads on/off as booleans)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    aliases = {"true": "on", "yes": "on", "false": "off", "no": "off"}
    text = aliases.get(text, text)
    if text not in ("auto", "on", "off"):
        raise ConfigError(f"extra_bufts is auto, on or off, got {value!r}", key="model.options.extra_bufts")
    return text


def verdict_file() -> Path:
    return promptweave_home() / "llamacpp-probe.json"


def _cpu() -> dict[str, str]:
    info = {"machine": platform.machine(), "system": platform.system()}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {**info, "processor": platform.processor()}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "flags", "Features", "CPU implementer", "CPU part") and name not in info:
            info[name] = value.strip()
    return info


def _build() -> dict[str, Any]:
    """llama-cpp-python's version and its shared libraries (a rebuild with other flags changes them)."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    libs = {}
    for lib in sorted(lib_dir.glob("*")) if lib_dir.is_dir() else []:
        if lib.is_file() and not lib.is_symlink():
            st = lib.stat()
            libs[lib.name] = [st.st_size, st.st_mtime_ns]
    return {"llama_cpp_python": getattr(llama_cpp, "__version__", "?"), "libs": libs}


def probe_key(model_path: Path) -> str:
    """One key per machine + llama.cpp build + model file."""
    st = model_path.stat()
    blob = {"cpu": _cpu(), "build": _build(),
            "model": [str(model_path.resolve()), st.st_size, st.st_mtime_ns]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _read_verdicts() -> dict[str, Any]:
    try:
        data = json.loads(verdict_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, verdict: dict[str, Any]) -> None:
    path = verdict_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_verdicts()
        data[key] = verdict
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a probe per process


def probe_command(model_path: Path) -> list[str]:
    """The child that loads ``model_path`` with llama.cpp's defaults and decodes a few tokens."""
    return [sys.executable, "-m", "promptweave.models.llamacpp_probe", str(model_path)]


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_probe(model_path: Path, command: list[str] | None = None,
              timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run the probe child; ``{"extra_bufts": bool, "reason": str, "remember": bool}``."""
    cmd = command or probe_command(model_path)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        # an overloaded machine, or a hang in the fast path: use the safe path now, ask again next time
        return {"extra_bufts": False, "reason": f"the probe did not finish in {timeout:.0f} s", "remember": False}
    if proc.returncode < 0:
        return {"extra_bufts": False, "remember": True,
                "reason": f"llama.cpp died with {_signal_name(proc.returncode)} using extra buffer types"}
    if proc.returncode != 0:
        # a Python-level failure (bad file, ...): the real load raises it as a clear error
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return {"extra_bufts": True, "reason": f"probe failed: {tail[0]}", "remember": False}
    return {"extra_bufts": True, "reason": "load and decode succeeded", "remember": True}


def resolve_extra_bufts(setting: Any, model_path: Path) -> bool:
    """Whether to load ``model_path`` with llama.cpp's extra buffer types (see the module doc)."""
    mode = parse_setting(setting)
    if mode != "auto":
        return mode == "on"
    key = probe_key(model_path)
    known = _read_verdicts().get(key)
    if isinstance(known, dict) and isinstance(known.get("extra_bufts"), bool):
        return bool(known["extra_bufts"])
    verdict = run_probe(model_path)
    if verdict.pop("remember"):
        _remember(key, {**verdict, "model": model_path.name})
    if not verdict["extra_bufts"]:
        print(f"promptweave: {verdict['reason']} on this machine ({_cpu().get('model name', platform.machine())}); "
              f"loading {model_path.name} without them (the safe path). Set model.options.extra_bufts: on|off "
              f"to choose; verdict kept in {verdict_file()}", file=sys.stderr, flush=True)
    return bool(verdict["extra_bufts"])


def _probe_main(model_path: str) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, n_ctx=512, n_threads=os.cpu_count() or 1, verbose=False)
    llm.create_chat_completion(messages=[{"role": "user", "content": _PROMPT}], max_tokens=8, temperature=0.0)
    llm.close()


if __name__ == "__main__":
    _probe_main(sys.argv[1])

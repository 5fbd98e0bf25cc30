"""``python -m promptweave.models.llamacpp_server ARGS``: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``, the same arguments) with promptweave's safe model loading.

On CPUs where llama.cpp's extra buffer types crash (see :mod:`.llamacpp_probe`), the plain server
dies with SIGSEGV on its first request. This launcher resolves the same probe verdict for
``--model`` first and, when it says so, starts the server with ``use_extra_bufts`` off.
``--extra_bufts auto|on|off`` (taken out before the server sees the arguments) forces either way.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from .llamacpp import model_defaults
from .llamacpp_probe import resolve_extra_bufts


def main(argv: list[str]) -> None:
    args = list(argv)
    setting = "auto"
    if "--extra_bufts" in args:
        i = args.index("--extra_bufts")
        setting = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
    model = args[args.index("--model") + 1] if "--model" in args[:-1] else os.environ.get("MODEL")
    use = resolve_extra_bufts(setting, Path(model)) if model and Path(model).is_file() else True
    sys.argv = ["llama_cpp.server", *args]
    with model_defaults(use):  # held for the server's life: every model it loads gets the same defaults
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

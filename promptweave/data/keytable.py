"""Row keys held without a Python object per key.

A run of a million rows keeps every row key for its whole length (the data order, the store's
index, the scored rows). As ``str`` objects in a list or dict that costs ~150 bytes a key, and
the small long-lived objects scattered among short-lived ones keep the allocator from giving
memory back. :class:`KeyList` keeps the keys' UTF-8 bytes in one ``bytearray`` and their ends in
one ``array`` (~16 bytes a key plus its text); :class:`KeyTable` adds an exact lookup, an
open-addressing table of slot numbers probed by the key's hash and confirmed by comparing the
stored bytes, so a hash collision never confuses two keys.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import Any, overload

_ENC = ("utf-8", "surrogatepass")  # keys read from JSON may hold lone surrogates


class KeyList:
    """An append-only sequence of strings, stored packed (indexing decodes one)."""

    __slots__ = ("_blob", "_ends")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("q", [0])  # key i is _blob[_ends[i]:_ends[i + 1]]
        for key in keys:
            self.append(key)

    def append(self, key: str) -> None:
        self._blob += key.encode(*_ENC)
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends) - 1

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("key index out of range")
        return self._blob[self._ends[i]:self._ends[i + 1]].decode(*_ENC)

    def __iter__(self) -> Iterator[str]:
        blob, ends = self._blob, self._ends
        for i in range(len(ends) - 1):
            yield blob[ends[i]:ends[i + 1]].decode(*_ENC)

    def _same(self, i: int, encoded: bytes) -> bool:
        ends = self._ends
        return self._blob[ends[i]:ends[i + 1]] == encoded

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (KeyList, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        shown = self[:5]
        return f"{type(self).__name__}({shown!r}{' + %d more' % (len(self) - 5) if len(self) > 5 else ''})"

    def nbytes(self) -> int:
        """The memory the keys take (for benchmarks)."""
        return len(self._blob) + self._ends.itemsize * len(self._ends)


class KeyTable(KeyList):
    """A :class:`KeyList` of distinct keys with an exact key -> position lookup."""

    __slots__ = ("_hashes", "_table", "_mask")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._hashes = array("q")  # hash of key i: probing and growing never decode a key
        self._table = array("i", bytes(4 * 8))  # position + 1 per cell, 0 = empty
        self._mask = 7
        super().__init__(keys)

    def append(self, key: str) -> None:
        """Add ``key`` at the end (it must not be here yet: use :meth:`add` when it may be)."""
        n = len(self)
        if self.add(key) < n:
            raise ValueError(f"key {key!r} is already in the table")

    def add(self, key: str) -> int:
        """The position of ``key``, added at the end when it is not here."""
        h = hash(key)
        table, hashes, mask = self._table, self._hashes, self._mask
        i = h & mask
        encoded: bytes | None = None
        while True:  # _find, inlined: the free cell it stops at is where the key goes
            s = table[i] - 1
            if s < 0:
                break
            if hashes[s] == h:
                if encoded is None:
                    encoded = key.encode(*_ENC)
                if self._same(s, encoded):
                    return s
            i = (i + 1) & mask
        s = len(hashes)
        self._blob += key.encode(*_ENC) if encoded is None else encoded
        self._ends.append(len(self._blob))
        hashes.append(h)
        if 2 * (s + 1) > len(table):
            self._grow()
        else:
            table[i] = s + 1
        return s

    def index(self, key: str) -> int:
        """The position of ``key``, -1 when it is not here."""
        return self._find(key, hash(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.index(key) >= 0

    def _find(self, key: str, h: int) -> int:
        table, hashes, mask = self._table, self._hashes, self._mask
        i = h & mask
        encoded: bytes | None = None
        while True:
            s = table[i] - 1
            if s < 0:
                return -1
            if hashes[s] == h:  # almost surely the key; the bytes decide
                if encoded is None:
                    encoded = key.encode(*_ENC)
                if self._same(s, encoded):
                    return s
            i = (i + 1) & mask

    def _grow(self) -> None:
        size = len(self._table) * 2
        while 2 * len(self) > size:
            size *= 2
        self._table = table = array("i", bytes(4 * size))
        self._mask = mask = size - 1
        for s, h in enumerate(self._hashes, 1):
            i = h & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = s

    def nbytes(self) -> int:
        return super().nbytes() + self._hashes.itemsize * len(self._hashes) + 4 * len(self._table)


def as_key_table(keys: Any) -> KeyTable:
    """``keys`` as a :class:`KeyTable` (a list of distinct keys is copied into one)."""
    return keys if isinstance(keys, KeyTable) else KeyTable(keys)

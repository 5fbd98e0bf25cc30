"""The run store's recovery: whatever damage a crash, a power loss or a stray editor leaves in
``results.jsonl``, every record whose bytes survived is kept, nothing is invented, the dropped
bytes are kept aside, and the repaired file reads back clean."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from promptweave.pipelines.rundir import FILE_MODE, RunDirError, write_text_atomic
from promptweave.pipelines.store import RunStore


def record(i: int, text: str) -> dict[str, Any]:
    return {"key": f"k{i}", "index": i, "status": "ok", "fields": {"source": text},
            "outputs": {"hyp": {"value": text[::-1], "raw": text}}, "fp": f"{i:016x}"}


def line(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")


# how one line of the file is damaged; the first three leave the record itself readable
INTACT = {"keep", "nul_before", "nul_after"}
OPS = st.one_of(
    st.just(("keep", 0)), st.tuples(st.just("nul_before"), st.integers(1, 4096)),
    st.tuples(st.just("nul_after"), st.integers(1, 4096)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),  # torn: no newline, glued to the next line
    st.tuples(st.just("garbage"), st.integers(0, 2**32)),
    st.tuples(st.just("bad_utf8"), st.integers(0, 10_000)),
    st.tuples(st.just("wrong_type"), st.integers(0, 3)),
    st.tuples(st.just("nuls"), st.integers(1, 4096)),  # the line's bytes became NULs (power loss)
)


def damage(rec: dict[str, Any], op: str, n: int) -> bytes:
    raw = line(rec)
    if op == "keep":
        return raw
    if op == "nul_before":
        return b"\0" * n + raw
    if op == "nul_after":
        return raw + b"\0" * n
    if op == "truncate":
        return raw[: n % (len(raw) - 1)]
    if op == "garbage":
        return os.urandom(1 + n % 200) if n % 2 else bytes(range(n % 256))[:80] + b"\n"
    if op == "bad_utf8":
        cut = 1 + n % (len(raw) - 2)
        return raw[:cut] + b"\xff\xc3(" + raw[cut:]
    if op == "wrong_type":
        bad = dict(rec)
        broken: dict[str, Any] = {0: {"key": 7}, 1: {"status": "maybe"}, 2: {"fields": [1]}, 3: {"outputs": None}}[n]
        bad.update(broken)
        if n == 0:
            bad.pop("key")
        return line(bad)
    return b"\0" * len(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=25),
       ops=st.lists(OPS, min_size=25, max_size=25), cut=st.one_of(st.none(), st.integers(0, 100_000)))
def test_every_readable_row_is_kept(tmp_path_factory: pytest.TempPathFactory, texts: list[str],
                                    ops: list[tuple[str, int]], cut: int | None) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    recs = [record(i, t) for i, t in enumerate(texts)]
    blob = b""
    readable: set[str] = set()
    for rec, (op, n) in zip(recs, ops):
        part = damage(rec, op, n)
        blob += part
        if op in INTACT:
            readable.add(rec["key"])
    if cut is not None and cut < len(blob):  # a random truncation of the whole file
        blob = blob[:cut]
        readable = {k for k in readable
                    if line(recs[int(k[1:])]).rstrip(b"\n") in blob}  # only what is still whole
    (run_dir / "results.jsonl").write_bytes(blob)

    store = RunStore(run_dir)
    store.open()
    store.close()
    kept = {r["key"]: r for r in store}
    originals = {r["key"]: r for r in recs}
    assert readable <= set(kept), f"lost readable rows {sorted(readable - set(kept))}"
    for key, rec in kept.items():  # nothing invented, nothing altered
        assert rec == originals[key]
    # the repaired file reads back as exactly the kept records, with nothing more to repair
    again = RunStore(run_dir)
    again.open()
    again.close()
    assert again.recovery is None
    assert {r["key"]: r for r in again} == kept
    if store.recovery and store.recovery["dropped_bytes_in"]:
        assert (run_dir / "results.jsonl.corrupt").stat().st_size > 0


def test_a_corrupt_middle_line_keeps_every_row_after_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = [record(i, f"row {i}") for i in range(6)]
    lines = [line(r) for r in recs]
    lines[2] = b'{"key": "k2", "status": "ok", "fie\n'
    (tmp_path / "results.jsonl").write_bytes(b"".join(lines))
    store = RunStore(tmp_path)
    with caplog.at_level("WARNING"):
        store.open()
    store.close()
    assert sorted(r["key"] for r in store) == ["k0", "k1", "k3", "k4", "k5"]
    assert store.recovery is not None and store.recovery["skipped_lines"] == [3]
    assert "skipped 1 unreadable line(s) (3: not JSON)" in caplog.text
    assert (tmp_path / "results.jsonl.corrupt").read_bytes() == b'{"key": "k2", "status": "ok", "fie\n'


def test_compact_keeps_current_rows_in_order_and_moves_the_rest_aside(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open()
    for i in (2, 0, 1, 3):
        store.append(record(i, f"t{i}"))
    newer = record(1, "t1 again") | {"fp": "changed"}
    store.append(newer)
    moved = store.compact(["k1", "k0", "k2"])  # k3 left the data; k1's old result was replaced
    assert moved == 2
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["key"], r["index"]) for r in rows] == [("k1", 0), ("k0", 1), ("k2", 2)]
    assert rows[0]["fields"]["source"] == "t1 again"
    aside = [json.loads(x) for x in (tmp_path / "superseded.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in aside) == ["k1", "k3"]


def test_a_symlink_at_any_temp_name_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("manifest.json.tmp", ".manifest.json.tmp", "results.jsonl.tmp"):
        (run_dir / name).symlink_to(victim)
    (run_dir / "manifest.json").symlink_to(victim)  # even the target name itself
    write_text_atomic(run_dir / "manifest.json", "{}\n")
    assert victim.read_text() == "precious\n"
    assert not (run_dir / "manifest.json").is_symlink() and (run_dir / "manifest.json").read_text() == "{}\n"
    assert stat.S_IMODE((run_dir / "manifest.json").stat().st_mode) == FILE_MODE  # not mkstemp's 0600


def test_a_symlinked_results_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.jsonl"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.jsonl").symlink_to(victim)
    with pytest.raises(RunDirError, match="symbolic link"):
        RunStore(run_dir).open()
    assert victim.read_text() == "precious\n"


def test_the_index_holds_no_object_per_row(tmp_path: Path) -> None:
    """A million-row run keeps its index for hours: it must cost a few dozen bytes a row in a few
    big buffers (a str and an int per key in a dict cost ~170), and still find every key."""
    import tracemalloc

    store = RunStore(tmp_path)
    store.open()
    n = 30_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):  # what the index keeps of each record (the record itself is dropped)
            store.append({"key": f"row-{i}", "index": i, "status": "ok", "fp": f"{i:016x}", "fields": {},
                          "outputs": {}})
        per_row = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_row < 100, f"{per_row:.0f} bytes a row"
    assert len(store) == n and store.status("row-12345").index == 12345 and store.status("row-x") is None
    todo, changed = store.to_run([f"row-{i}" for i in (5, 7)] + ["new"], [5, 8, 0])
    assert list(todo) == [0, 1, 1] and changed == 1  # row 7's fingerprint differs: it runs again
    assert store.compact([f"row-{i}" for i in range(n - 1, -1, -1)]) == 0  # reversed: rewritten
    assert [r["key"] for r in store.iter_ordered()][:2] == [f"row-{n - 1}", f"row-{n - 2}"]

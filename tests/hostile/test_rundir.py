"""Hostile run directories, through the real CLI (``python -m promptweave run``), each case under
a time limit: identifiers that try to leave ``output:``, symlinks planted where the run writes,
damaged ``results.jsonl`` files, a held lock, read-only and full file systems, broken caches,
and a run id reused with another config.

Every refusal is one line on stderr (``error: ...``), exit code 2, no traceback, and leaves the
earlier finished run as it was; every recovery keeps each readable row without paying for it
again (the model calls of the resumed run are read from its ``--json`` summary).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, write_jsonl

ROWS = 5
TIME_LIMIT = 60  # seconds per CLI call; a hang fails the case
GOOD = """name: rd
run_id: r1
output: runs
model: {backend: scripted, options: {default: 'EN: {echo}'}}
data: {path: data.jsonl, key: id, src_lang: de, tgt_lang: en}
steps:
  - id: hyp
    translate: {prompt: tsp}
metrics: [bleu]
"""
RUN = Path("runs/rd/r1")
# root ignores file permissions; without these capabilities it meets them like any user
DROP_ROOT = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
             if os.geteuid() == 0 and shutil.which("setpriv") else [])
needs_permissions = pytest.mark.skipif(os.geteuid() == 0 and not DROP_ROOT,
                                       reason="running as root without setpriv: permissions are not enforced")


def cli(cwd: Path, *args: str, preexec: Callable[[], None] | None = None,
        as_user: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = (DROP_ROOT if as_user else []) + [sys.executable, "-m", "promptweave", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=TIME_LIMIT,
                          preexec_fn=preexec)


def run(cwd: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return cli(cwd, "run", "pipe.yaml", "--no-progress", "--json", *args, **kw)


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a finished run in runs/rd/r1 (each case works on a copy)."""
    root = tmp_path_factory.mktemp("golden")
    write_jsonl(root / "data.jsonl", [{"id": f"s{i}", "source": f"Satz {i}.", "reference": f"Sentence {i}."}
                                      for i in range(ROWS)])
    (root / "pipe.yaml").write_text(GOOD, encoding="utf-8")
    res = run(root)
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def project(golden: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "p"
    shutil.copytree(golden, dest, symlinks=True)
    return dest


def refused(res: subprocess.CompletedProcess[str], *parts: str) -> str:
    """Exit 2 with one line ``error: ...`` holding every part, and no traceback."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, f"exit {res.returncode}: {res.stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for part in parts:
        assert part in lines[0], f"{part!r} not in {lines[0]}"
    return lines[0]


def results(project: Path, run_dir: Path = RUN) -> dict[str, dict[str, Any]]:
    lines = (project / run_dir / "results.jsonl").read_bytes().splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def calls(res: subprocess.CompletedProcess[str]) -> int:
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)["usage"]["calls"])


def set_config(project: Path, old: str, new: str) -> None:
    cfg = project / "pipe.yaml"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new), encoding="utf-8")


# ---------------------------------------------------------------- identifiers

BAD_RUN_IDS = ["../x", "../../escape", "..", ".", "a/b", "/tmp/pw-abs-run", "a\\b", "x" * 300, "",
               "a\nb", "tab\there", "bell\x07", " "]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=lambda s: repr(s)[:20])
def test_cli_run_id_cannot_leave_output(project: Path, run_id: str) -> None:
    before = results(project)
    refused(run(project, "--run-id", run_id), "--run-id")
    assert sorted(p.name for p in project.parent.iterdir()) == ["p"]
    assert sorted(p.name for p in (project / "runs" / "rd").iterdir()) == ["r1"]
    assert not Path("/tmp/pw-abs-run").exists()
    assert results(project) == before


@pytest.mark.parametrize("field, value, expect", [
    ("run_id", "'..'", "'run_id'"), ("run_id", "'../../../etc'", "'run_id'"), ("run_id", '"a\\0b"', "NUL"),
    ("run_id", "'a/b'", "'/'"), ("name", "'..'", "'name'"), ("name", "'.'", "'name'"),
    ("run_id", "'" + "y" * 400 + "'", "characters long"),
])
def test_config_identifiers_cannot_leave_output(project: Path, field: str, value: str, expect: str) -> None:
    set_config(project, {"run_id": "run_id: r1\n", "name": "name: rd\n"}[field], f"{field}: {value}\n")
    line = refused(run(project), expect)
    assert "pipe.yaml:" in line  # points at the file
    assert sorted(p.name for p in project.parent.iterdir()) == ["p"]


# ---------------------------------------------------------------- symlinks planted in the run directory

@pytest.mark.parametrize("name", ["results.jsonl.tmp", "manifest.json.tmp", "scores.json.tmp", "report.md.tmp",
                                  "manifest.json", "report.md", "scores.json", "identity.json"])
def test_a_planted_symlink_is_never_written_through(project: Path, name: str) -> None:
    victim = project.parent / "victim.txt"
    victim.write_text("precious\n")
    link = project / RUN / name
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    res = run(project)
    assert calls(res) == 0
    assert victim.read_text() == "precious\n"
    if not name.endswith(".tmp"):  # the file itself was replaced by a regular file
        assert not link.is_symlink() and link.stat().st_size > 0


@pytest.mark.parametrize("name", ["results.jsonl", ".lock"])
def test_a_symlink_in_place_of_a_file_the_run_appends_to_is_refused(project: Path, name: str) -> None:
    victim = project.parent / "victim.txt"
    victim.write_text("precious\n")
    link = project / RUN / name
    if link.exists():
        shutil.copy(link, project.parent / "saved")
        link.unlink()
    link.symlink_to(victim)
    refused(run(project), "symbolic link", name)
    assert victim.read_text() == "precious\n"


def test_a_symlinked_corrupt_copy_is_refused(project: Path) -> None:
    victim = project.parent / "victim.txt"
    victim.write_text("precious\n")
    with open(project / RUN / "results.jsonl", "ab") as f:
        f.write(b"garbage line\n")
    (project / RUN / "results.jsonl.corrupt").symlink_to(victim)
    refused(run(project), "symbolic link")
    assert victim.read_text() == "precious\n"


# ---------------------------------------------------------------- damaged results.jsonl

def _rewrite(project: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    path = project / RUN / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(change(lines)))


DAMAGE: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int]] = {
    # name: (damage, rows whose record is lost and runs again)
    "corrupt_middle_line": (lambda ls: ls[:2] + [b"}{ not json\n"] + ls[3:], 1),
    "nul_padding_at_end": (lambda ls: ls[:3] + [b"\0" * (len(ls[3]) + len(ls[4]))], 2),
    "nul_run_glued_to_a_record": (lambda ls: ls[:2] + [b"\0" * 512 + ls[2]] + ls[3:], 0),
    "nul_bytes_inside_a_record": (lambda ls: ls[:1] + [ls[1][:20] + b"\0\0\0\0" + ls[1][24:]] + ls[2:], 1),
    "invalid_utf8": (lambda ls: ls[:1] + [ls[1][:30] + b"\xff\xfe" + ls[1][30:]] + ls[2:], 1),
    "record_without_key": (lambda ls: ls[:1] + [ls[1].replace(b'"key": "s1", ', b"")] + ls[2:], 1),
    "key_not_a_string": (lambda ls: ls[:1] + [ls[1].replace(b'"key": "s1"', b'"key": 1')] + ls[2:], 1),
    "status_wrong": (lambda ls: ls[:3] + [ls[3].replace(b'"status": "ok"', b'"status": 7')] + ls[4:], 1),
    "outputs_not_an_object": (lambda ls: ls[:4] + [ls[4].replace(b'"outputs": {', b'"outputs": 3, "x": {')], 1),
    "array_line_between": (lambda ls: ls[:2] + [b"[1, 2, 3]\n"] + ls[2:], 0),
    "torn_last_line": (lambda ls: ls[:4] + [ls[4][: len(ls[4]) // 2]], 1),
    "torn_record_glued_to_next": (lambda ls: ls[:1] + [ls[1][:40] + ls[2]] + ls[3:], 1),
    "all_nul": (lambda ls: [b"\0" * sum(map(len, ls))], ROWS),
    "blank_and_crlf_lines": (lambda ls: [b"\n", b"   \n"] + [x.replace(b"\n", b"\r\n") for x in ls], 0),
    "utf8_bom": (lambda ls: [b"\xef\xbb\xbf" + ls[0]] + ls[1:], 0),
    "deeply_nested_line": (lambda ls: ls[:2] + [b"[" * 100_000 + b"\n"] + ls[2:], 0),
    "huge_garbage_line": (lambda ls: ls[:2] + [b"x" * 5_000_000 + b"\n"] + ls[2:], 0),
    "duplicate_records": (lambda ls: ls + ls, 0),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_results_keep_every_readable_row(project: Path, case: str) -> None:
    before = results(project)
    damage, lost = DAMAGE[case]
    _rewrite(project, damage)
    res = run(project)
    assert "Traceback" not in res.stderr, res.stderr
    assert calls(res) == 0  # rows that ran again were answered by the cache
    assert json.loads(res.stdout)["ran"] == lost  # the readable rows were resumed, not run again
    after = results(project)
    assert set(after) == set(before)
    for key, rec in before.items():
        assert after[key]["outputs"]["hyp"]["value"] == rec["outputs"]["hyp"]["value"]
    warnings = [x for x in res.stderr.splitlines() if "skipped" in x]
    manifest = json.loads((project / RUN / "manifest.json").read_text())
    if case not in ("blank_and_crlf_lines", "duplicate_records"):
        assert len(warnings) == 1 and "kept" in warnings[0], res.stderr
        assert manifest["recovery"]["skipped_lines"], manifest["recovery"]
        copy = project / RUN / "results.jsonl.corrupt"  # what was dropped (NUL padding carries nothing)
        only_nuls = case in ("all_nul", "nul_padding_at_end", "nul_run_glued_to_a_record")
        assert copy.exists() == bool(manifest["recovery"]["dropped_bytes_in"]) == (not only_nuls)


def test_results_file_that_is_a_directory(project: Path) -> None:
    (project / RUN / "results.jsonl").unlink()
    (project / RUN / "results.jsonl").mkdir()
    refused(run(project), "results.jsonl")


@needs_permissions
def test_results_file_unreadable(project: Path) -> None:
    (project / RUN / "results.jsonl").chmod(0)
    refused(run(project, as_user=True), "results.jsonl", "permission denied")


# ---------------------------------------------------------------- the lock

def test_a_second_process_is_refused_naming_the_holder(project: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from promptweave.pipelines.lock import RunLock;"
         f" lock = RunLock(Path({str(project / RUN)!r})); lock.acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = results(project)
        refused(run(project), f"in use by PID {holder.pid} on host ", "another --run-id")
        assert results(project) == before
    finally:
        holder.communicate("", timeout=TIME_LIMIT)
    assert calls(run(project)) == 0  # released by its exit


def test_a_stale_lock_file_does_not_block(project: Path) -> None:
    (project / RUN / ".lock").write_text('{"pid": 999999, "host": "gone", "started": "yesterday"}')
    assert calls(run(project)) == 0


# ---------------------------------------------------------------- file systems and caches

@needs_permissions
def test_read_only_run_directory(project: Path) -> None:
    before = results(project)
    (project / RUN).chmod(0o555)
    try:
        refused(run(project, as_user=True), "permission denied")
    finally:
        (project / RUN).chmod(0o755)
    assert results(project) == before


@needs_permissions
def test_read_only_output_directory(project: Path) -> None:
    (project / "runs" / "rd").chmod(0o555)
    try:
        refused(run(project, "--run-id", "fresh", as_user=True), "permission denied", "'output'")
    finally:
        (project / "runs" / "rd").chmod(0o755)


@needs_permissions
def test_read_only_cache_file(project: Path) -> None:
    (project / "runs" / "cache.sqlite").chmod(0o444)
    refused(run(project, as_user=True), "cache", "not writable")


@pytest.mark.parametrize("kind, expect", [
    ("garbage", "not an SQLite file"), ("text", "not an SQLite file"), ("foreign", "something else"),
    ("foreign_schema", "other columns"), ("other_app", "another application"), ("directory", "directory")])
def test_a_cache_that_is_not_ours_is_one_error_at_start(project: Path, kind: str, expect: str) -> None:
    cache = project / "runs" / "cache.sqlite"
    for extra in ("", "-wal", "-shm"):
        Path(f"{cache}{extra}").unlink(missing_ok=True)
    if kind == "garbage":
        cache.write_bytes(os.urandom(20_000))
    elif kind == "text":
        cache.write_text("not a database\n" * 100)
    elif kind == "directory":
        cache.mkdir()
    else:
        db = sqlite3.connect(cache)
        db.execute({"foreign": "CREATE TABLE users (name)", "foreign_schema": "CREATE TABLE completions (a, b)",
                    "other_app": "PRAGMA application_id = 1234"}[kind])
        db.commit()
        db.close()
    shutil.rmtree(project / RUN)  # rows would otherwise need no model and no cache
    refused(run(project), "cache", expect, "cache: off")


def test_a_file_size_limit_mid_run_stops_resumably(project: Path) -> None:
    """A write that fails mid-run (here the file-size limit, as a full disk would) is one error;
    the rows written before it stay and the next run resumes from them."""
    rows = [{"id": f"b{i}", "source": f"Satz {i} " + "lang " * 400, "reference": f"Sentence {i}."}
            for i in range(40)]
    write_jsonl(project / "data.jsonl", rows)
    shutil.rmtree(project / "runs")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    res = run(project, "--set", "concurrency=1", preexec=limit)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 2, res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "file-size limit" in errors[0] and "resume" in errors[0], res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # at most one warning that the cache went off
    lines = (project / RUN / "results.jsonl").read_bytes().splitlines(keepends=True)
    assert 0 < len(lines) < 40 and all(x.endswith(b"\n") for x in lines)  # no torn line left
    resumed = run(project, "--set", "concurrency=1")
    assert "skipped" not in resumed.stderr
    assert json.loads(resumed.stdout)["skipped"] == len(lines) and calls(resumed) <= 40 - len(lines)


# ---------------------------------------------------------------- identity through the CLI

def test_run_id_reuse_with_another_config_is_refused(project: Path) -> None:
    before = results(project)
    refused(run(project, "--set", "model.temperature=0.3"), "different config", "model.temperature", "--overwrite")
    assert results(project) == before
    over = run(project, "--set", "model.temperature=0.3", "--overwrite")
    assert json.loads(over.stdout)["ran"] == ROWS


def test_an_edited_row_runs_again_alone(project: Path) -> None:
    data = project / "data.jsonl"
    data.write_text(data.read_text().replace("Satz 3.", "Satz drei."))
    res = run(project)
    assert calls(res) == 1 and json.loads(res.stdout)["ran"] == 1
    assert results(project)["s3"]["outputs"]["hyp"]["value"].endswith("Satz drei.")
    assert calls(run(project)) == 0


# ---------------------------------------------------------------- FIFOs where a run reads or writes

@pytest.mark.parametrize("name, refuses", [
    ("results.jsonl", True), (".lock", True), ("identity.json", False), ("superseded.jsonl", True),
    ("results.jsonl.corrupt", True), ("../../cache.sqlite", True)])
def test_a_fifo_never_blocks_the_run(project: Path, name: str, refuses: bool) -> None:
    target = project / RUN / name
    for extra in ("", "-wal", "-shm"):
        Path(f"{target}{extra}").unlink(missing_ok=True)
    os.mkfifo(target)
    if name == "superseded.jsonl":  # a row leaves the data: its record moves there
        data = project / "data.jsonl"
        data.write_text("".join(data.read_text().splitlines(keepends=True)[1:]))
    if name == "results.jsonl.corrupt":
        (project / RUN / "results.jsonl").write_text('{"key": "s0", "status": "ok", "fie\n')
    if name.endswith("cache.sqlite"):
        shutil.rmtree(project / RUN)
    res = run(project)  # under TIME_LIMIT: a blocking open would fail the case
    if refuses:
        refused(res, "not a regular file")
    else:
        assert calls(res) == 0 and (project / RUN / name).is_file()

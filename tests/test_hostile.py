"""Hostile and malformed input, through the real CLI: every case in ``tests/hostile/`` ends with one
line on stderr that says where and what, exit code 2, no traceback, and leaves the results of an
earlier good run in the same run directory untouched.

A case is a pipeline file whose header comments say what to expect::

    # <what is wrong>
    # at: <text>          the error names FILE:LINE of the first line holding <text> (or a number)
    # args: --set a=b     extra CLI arguments (optional)
    # command: run        only this command (default: validate and run)
    # expect: <part> | <part>   substrings of the error line

Every case runs as ``promptweave run FILE``, each in a process of its own: forked from one
interpreter that has imported promptweave (it runs ``python -m promptweave`` exactly, less 0.7 s
of imports per case), a few at a time; a handful also in a fresh ``python -m promptweave``. And
every case runs as ``promptweave validate FILE`` through the same ``main()`` in this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

CORPUS = Path(__file__).parent / "hostile"
GOOD = """name: hostile
run_id: r1
output: runs
model: {backend: scripted, options: {default: 'EN: {echo}'}}
data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}
steps:
  - id: hyp
    translate: {prompt: tsp}
metrics: [bleu]
"""


@dataclass
class Case:
    name: str
    path: Path
    commands: list[str]
    args: list[str]
    expect: list[str]
    at: str | None

    @classmethod
    def read(cls, path: Path) -> Case:
        text = path.read_bytes().decode("utf-8", "replace")

        def header(key: str) -> str | None:
            m = re.search(rf"^# {key}: (.*)$", text, re.M)
            return m.group(1).strip() if m else None

        expect = header("expect")
        assert expect, f"{path.name} has no '# expect:' line"
        return cls(path.stem, path, (header("command") or "validate run").split(), (header("args") or "").split(),
                   [part.strip() for part in expect.split("|")], header("at"))

    def line(self) -> int | None:
        if self.at is None:
            return None
        if self.at.isdigit():
            return int(self.at)
        body = self.path.read_bytes().decode("utf-8", "replace").splitlines()
        for i, text in enumerate(body, start=1):
            if not text.startswith("# ") and self.at in text:
                return i
        raise AssertionError(f"{self.name}: no line holds {self.at!r}")


CASES = sorted((Case.read(p) for p in CORPUS.glob("*.yaml")), key=lambda c: c.name)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the corpus, the files made at test time, and a finished good run in the run
    directory every case names (runs/hostile/r1)."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(CORPUS, root / "hostile")
    made = root / "hostile" / "generated"
    made.mkdir()
    (made / "a_directory").mkdir()
    os.symlink(made / "nowhere.jsonl", made / "dangling.jsonl")
    with open(made / "huge_line.jsonl", "wb") as f:  # 1 GB in one line, sparse: no disk is used
        f.truncate(1 << 30)
    good = root / "hostile" / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    res = _cli(root, "run", str(good.relative_to(root)), "--no-progress")
    assert res.returncode == 0, res.stderr
    yield root
    (made / "huge_line.jsonl").unlink()


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_HOSTILE")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "promptweave", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


# Reads jobs (JSON on stdin), forks one child per job (at most 3 at once); a child runs
# ``python -m promptweave ARGS`` (runpy, as -m does) with stdout/stderr in files of its own.
_FORK_RUNNER = r"""
import json, os, runpy, sys
import promptweave.cli  # the expensive part, once: the CLI and what its commands import lazily
import promptweave.config, promptweave.pipelines.engine, promptweave.pipelines.finish
import promptweave.pipelines.steps.generate, promptweave.pipelines.steps.translate, promptweave.models.scripted
jobs, running, codes = json.load(sys.stdin), {}, {}
def reap():
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
for i, job in enumerate(jobs):
    while len(running) >= 3:
        reap()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(job["cwd"])
            for fd, name in ((1, "out"), (2, "err")):
                os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["promptweave", *job["argv"]]
            try:
                runpy.run_module("promptweave", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    running[pid] = i
while running:
    reap()
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""


def _cli_batch(cwd: Path, argvs: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """``python -m promptweave ARGV`` for each ARGV, each in its own (forked) process."""
    jobs = [{"argv": a, "cwd": str(cwd), "out": str(cwd / f".job{i}.out"), "err": str(cwd / f".job{i}.err")}
            for i, a in enumerate(argvs)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_HOSTILE")}
    runner = subprocess.run([sys.executable, "-c", _FORK_RUNNER], input=json.dumps(jobs), capture_output=True,
                            text=True, env=env, timeout=600, cwd=REPO)
    assert runner.returncode == 0, runner.stderr
    out = []
    for job, code in zip(jobs, json.loads(runner.stdout)):
        out.append(subprocess.CompletedProcess(job["argv"], code, Path(job["out"]).read_text(),
                                               Path(job["err"]).read_text()))
        Path(job["out"]).unlink()
        Path(job["err"]).unlink()
    return out


@pytest.fixture(scope="module")
def run_results(arena: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """``promptweave run CASE`` for every case; the run directory must not change."""
    before = _snapshot(arena / "runs")
    todo = [c for c in CASES if "run" in c.commands]
    done = _cli_batch(arena, [["run", f"hostile/{c.path.name}", *c.args, "--no-progress"] for c in todo])
    assert _snapshot(arena / "runs") == before, "a failed run changed the results of the earlier good run"
    return {c.name: r for c, r in zip(todo, done)}


def _check(case: Case, code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert code == 2, f"exit {code}: {stderr}"
    assert len(lines) == 1, f"more than one line:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for part in case.expect:
        assert part in line, f"{part!r} not in: {line}"
    n = case.line()
    if n is not None:
        assert f"{case.name}.yaml:{n}:" in line, f"expected {case.name}.yaml:{n}: in: {line}"


@pytest.mark.parametrize("case", [c for c in CASES if "run" in c.commands], ids=lambda c: c.name)
def test_run_fails_cleanly(case: Case, run_results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    res = run_results[case.name]
    _check(case, res.returncode, res.stderr)
    assert res.stdout.strip() == "", res.stdout


@pytest.mark.parametrize("case", [c for c in CASES if "validate" in c.commands], ids=lambda c: c.name)
def test_validate_fails_cleanly(case: Case, arena: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptweave.cli import main

    monkeypatch.chdir(arena)
    monkeypatch.setattr(sys, "argv", ["promptweave", "validate", f"hostile/{case.path.name}", *case.args])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    _check(case, int(exited.value.code or 0), err.getvalue())


@pytest.mark.parametrize("name", ["unknown_top_key", "data_huge_line", "sandbox_cycler_globals"])
def test_fresh_interpreter(name: str, arena: Path) -> None:
    """A few cases in a plain ``python -m promptweave`` of their own, not forked."""
    case = next(c for c in CASES if c.name == name)
    res = _cli(arena, "run", f"hostile/{case.path.name}", *case.args, "--no-progress")
    _check(case, res.returncode, res.stderr)


def test_good_run_survives(arena: Path, run_results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """After every hostile run, the good run is whole: a resume finds every row finished."""
    res = _cli(arena, "run", "hostile/good.yaml", "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert '"ran": 0' in res.stdout and '"skipped": 3' in res.stdout

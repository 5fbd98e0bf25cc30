"""The hostile-input harness: an arena with a finished good run, the real CLI run in-process or in
forked processes, each under a time limit, and the check every failing case must pass.

A failing case must end with exit code 2, exactly one line on stderr that starts ``error:`` and
holds the expected parts (file:line, field, fix), nothing on stdout, no traceback, and must leave
the good run's directory byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO

CORPUS = Path(__file__).parent / "cases"
CASE_SECONDS = 60  # every case, in-process or forked, ends within this or fails
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
#: the header of table cases: the same run directory as the good run
BASE = """name: hostile
run_id: r1
output: runs
model: {backend: scripted, max_retries: 0}
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class TableCase:
    """One hostile input written into the arena: a config (``{d}`` stands for the case's data
    directory) and files beside it."""

    name: str
    config: str
    expect: list[str]
    at: str | None = None  # text of the config line the error must name (first line holding it)
    files: dict[str, str | bytes] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    commands: tuple[str, ...] = ("validate", "run")

    @property
    def config_name(self) -> str:
        return f"t_{self.name}.yaml"

    def write(self, cases_dir: Path) -> Path:
        data_dir = cases_dir / "tdata" / self.name
        data_dir.mkdir(parents=True, exist_ok=True)
        for rel, content in self.files.items():
            p = data_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        cfg = cases_dir / self.config_name
        cfg.write_text(self.config.replace("{d}", f"tdata/{self.name}"), encoding="utf-8")
        return cfg

    def line(self, cases_dir: Path) -> int | None:
        if self.at is None:
            return None
        for i, text in enumerate((cases_dir / self.config_name).read_text(encoding="utf-8").splitlines(), 1):
            if self.at in text:
                return i
        raise AssertionError(f"{self.name}: no config line holds {self.at!r}")


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_arena(root: Path) -> Path:
    """A copy of the corpus, the files made at test time, and a finished good run in the run
    directory every case names (cases/runs/hostile/r1). Returns the cases directory."""
    cases = root / "cases"
    shutil.copytree(CORPUS, cases)
    made = cases / "generated"
    made.mkdir()
    (made / "a_directory").mkdir()
    os.symlink(made / "nowhere.jsonl", made / "dangling.jsonl")
    os.mkfifo(made / "fifo.jsonl")
    with open(made / "huge_line.jsonl", "wb") as f:  # 1 GB in one line, sparse: no disk is used
        f.truncate(1 << 30)
    good = cases / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    res = subprocess_cli(root, "run", "cases/good.yaml", "--no-progress")
    assert res.code == 0, res.stderr
    return cases


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_HOSTILE")}
    env["PYTHONPATH"] = str(REPO)
    return env


def subprocess_cli(cwd: Path, *args: str, timeout: float = CASE_SECONDS) -> Result:
    """A fresh ``python -m promptweave ARGS``, as a user runs it."""
    res = subprocess.run([sys.executable, "-m", "promptweave", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=_env())
    return Result(res.returncode, res.stdout, res.stderr)


class _Timeout(Exception):
    pass


def inprocess_cli(cwd: Path, *args: str, timeout: float = CASE_SECONDS) -> Result:
    """``promptweave ARGS`` through :func:`promptweave.cli.main` in this process, output captured,
    under a SIGALRM time limit (a hang fails the case instead of the suite)."""
    from promptweave.cli import main

    out, err = io.StringIO(), io.StringIO()

    def expire(signum: int, frame: object) -> None:
        raise _Timeout(f"promptweave {' '.join(args)} ran past {timeout} s")

    old_argv, old_cwd = sys.argv, os.getcwd()
    # in this process: `run` must not hand its work to a supervised child, whose output and
    # time would escape the capture and the limit (the forked and subprocess cases keep it)
    old_supervise = os.environ.get("PROMPTWEAVE_SUPERVISE")
    os.environ["PROMPTWEAVE_SUPERVISE"] = "0"
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = ["promptweave", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv = old_argv
        os.chdir(old_cwd)
        if old_supervise is None:
            os.environ.pop("PROMPTWEAVE_SUPERVISE", None)
        else:
            os.environ["PROMPTWEAVE_SUPERVISE"] = old_supervise
    return Result(code, out.getvalue(), err.getvalue())


# Reads jobs (JSON on stdin), forks one child per job (at most 3 at once, each killed after its
# time limit); a child runs ``python -m promptweave ARGS`` (runpy, as -m does) with stdout/stderr
# in files of its own. The import of promptweave happens once, before the forks.
_FORK_RUNNER = r"""
import json, os, runpy, signal, sys, time
import promptweave.cli  # the expensive part, once: the CLI and what its commands import lazily
import promptweave.config, promptweave.pipelines.engine, promptweave.pipelines.finish
import promptweave.pipelines.steps.generate, promptweave.pipelines.steps.translate, promptweave.models.scripted
import promptweave.evaluators.lexical, sacrebleu.metrics
jobs, limit = json.load(sys.stdin)
running, codes = {}, {}
def reap(block):
    for pid, (i, started) in list(running.items()):
        if time.monotonic() - started > limit:
            os.kill(pid, signal.SIGKILL)
    try:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return
    if pid:
        i, _ = running.pop(pid)
        codes[i] = os.waitstatus_to_exitcode(status)
    else:
        time.sleep(0.01)
for i, job in enumerate(jobs):
    while len(running) >= 3:
        reap(False)
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
    running[pid] = (i, time.monotonic())
while running:
    reap(False)
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""


def forked_cli(cwd: Path, argvs: list[list[str]], timeout: float = CASE_SECONDS) -> list[Result]:
    """``python -m promptweave ARGV`` for each ARGV, each in its own forked process; a process
    past ``timeout`` is killed and reads as exit code -9."""
    jobs = [{"argv": a, "cwd": str(cwd), "out": str(cwd / f".job{i}.out"), "err": str(cwd / f".job{i}.err")}
            for i, a in enumerate(argvs)]
    start = time.monotonic()
    runner = subprocess.run([sys.executable, "-c", _FORK_RUNNER], input=json.dumps([jobs, timeout]),
                            capture_output=True, text=True, env=_env(), timeout=timeout + 60 * len(jobs) // 3 + 120,
                            cwd=REPO)
    assert runner.returncode == 0, runner.stderr
    out = []
    for job, code in zip(jobs, json.loads(runner.stdout)):
        out.append(Result(code, Path(job["out"]).read_text(errors="replace"), Path(job["err"]).read_text(errors="replace")))
        Path(job["out"]).unlink()
        Path(job["err"]).unlink()
    assert time.monotonic() - start < 600, "the forked batch took over 10 minutes"
    return out


def check_error(res: Result, expect: list[str], file_line: str | None = None) -> str:
    """The contract of a failing case; returns the error line."""
    assert res.code != -9, f"killed after {CASE_SECONDS} s: a hang"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert res.code == 2, f"exit {res.code}: {res.stderr}{res.stdout}"
    assert len(lines) == 1, f"more than one line:\n{res.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for part in expect:
        assert part in line, f"{part!r} not in: {line}"
    if file_line is not None:
        assert file_line in line, f"expected {file_line} in: {line}"
    assert res.stdout.strip() == "", res.stdout
    return line


_written: set[tuple[str, str]] = set()


def ensure_written(cases_dir: Path, case: TableCase) -> Path:
    key = (str(cases_dir), case.name)
    cfg = cases_dir / case.config_name
    if key not in _written:
        assert not cfg.exists(), f"two table cases are named {case.name}"
        case.write(cases_dir)
        _written.add(key)
    return cfg


def validate_case(root: Path, case: TableCase) -> str:
    """``promptweave validate`` in-process; the error names the config's file:line when ``at`` is set."""
    cases_dir = root / "cases"
    ensure_written(cases_dir, case)
    res = inprocess_cli(root, "validate", f"cases/{case.config_name}", *case.args)
    n = case.line(cases_dir)
    return check_error(res, case.expect, f"{case.config_name}:{n}:" if n else None)


FORK_EVERY = 4  # every 4th table case also runs in a process of its own


def run_batch(root: Path, cases: list[TableCase]) -> dict[str, list[Result]]:
    """``promptweave run`` of every case with "run" in its commands: in-process (the same
    ``main()``, under the time limit) for all, and forked for every :data:`FORK_EVERY`-th. The
    good run's directory must not change."""
    cases_dir = root / "cases"
    todo = [c for c in cases if "run" in c.commands]
    for c in todo:
        ensure_written(cases_dir, c)
    before = snapshot(cases_dir / "runs")
    out = {c.name: [inprocess_cli(root, "run", f"cases/{c.config_name}", *c.args, "--no-progress")] for c in todo}
    forked = todo[::FORK_EVERY]
    done = forked_cli(root, [["run", f"cases/{c.config_name}", *c.args, "--no-progress"] for c in forked])
    for c, r in zip(forked, done):
        out[c.name].append(r)
    assert snapshot(cases_dir / "runs") == before, "a failed run changed the results of the earlier good run"
    return out


def check_run(root: Path, case: TableCase, res: Result) -> str:
    n = case.line(root / "cases")
    return check_error(res, case.expect, f"{case.config_name}:{n}:" if n else None)


def table_tests(cases: list[TableCase]) -> tuple[object, object, object]:
    """The fixture and tests of a table module: ``table_results, test_validate, test_run = table_tests(CASES)``."""
    import pytest

    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"

    @pytest.fixture(scope="module", name="table_results")
    def table_results(hostile_arena: Path) -> dict[str, list[Result]]:
        return run_batch(hostile_arena, cases)

    @pytest.mark.parametrize("case", [c for c in cases if "validate" in c.commands], ids=lambda c: c.name)
    def test_validate(case: TableCase, hostile_arena: Path) -> None:
        validate_case(hostile_arena, case)

    @pytest.mark.parametrize("case", [c for c in cases if "run" in c.commands], ids=lambda c: c.name)
    def test_run(case: TableCase, hostile_arena: Path, table_results: dict[str, list[Result]]) -> None:
        for res in table_results[case.name]:  # in-process, and forked for some
            check_run(hostile_arena, case, res)

    return table_results, test_validate, test_run

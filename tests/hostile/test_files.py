"""The file corpus: each ``cases/*.yaml`` is a hostile pipeline file whose header comments say what
to expect::

    # <what is wrong>
    # at: <text>          the error names FILE:LINE of the first line holding <text> (or a number)
    # args: --set a=b     extra CLI arguments (optional)
    # command: run        only this command (default: validate and run)
    # expect: <part> | <part>   substrings of the error line

Every case runs as ``promptweave run FILE`` in a forked process of its own (under a time limit),
as ``promptweave validate FILE`` through ``main()`` in this process, and a few also in a fresh
``python -m promptweave``. See :mod:`tests.hostile.harness` for the contract each case must meet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.harness import CORPUS, Result, check_error, forked_cli, inprocess_cli, snapshot, subprocess_cli


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

    def check(self, res: Result) -> None:
        n = self.line()
        check_error(res, self.expect, f"{self.name}.yaml:{n}:" if n is not None else None)


CASES = sorted((Case.read(p) for p in CORPUS.glob("*.yaml")), key=lambda c: c.name)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 70


@pytest.fixture(scope="module")
def run_results(hostile_arena: Path) -> dict[str, Result]:
    """``promptweave run CASE`` for every case; the run directory must not change."""
    runs = hostile_arena / "cases" / "runs"
    before = snapshot(runs)
    todo = [c for c in CASES if "run" in c.commands]
    done = forked_cli(hostile_arena, [["run", f"cases/{c.path.name}", *c.args, "--no-progress"] for c in todo])
    assert snapshot(runs) == before, "a failed run changed the results of the earlier good run"
    return {c.name: r for c, r in zip(todo, done)}


@pytest.mark.parametrize("case", [c for c in CASES if "run" in c.commands], ids=lambda c: c.name)
def test_run_fails_cleanly(case: Case, run_results: dict[str, Result]) -> None:
    case.check(run_results[case.name])


@pytest.mark.parametrize("case", [c for c in CASES if "validate" in c.commands], ids=lambda c: c.name)
def test_validate_fails_cleanly(case: Case, hostile_arena: Path) -> None:
    case.check(inprocess_cli(hostile_arena, "validate", f"cases/{case.path.name}", *case.args))


@pytest.mark.parametrize("name", ["unknown_top_key", "data_huge_line", "sandbox_cycler_globals"])
def test_fresh_interpreter(name: str, hostile_arena: Path) -> None:
    """A few cases in a plain ``python -m promptweave`` of their own, not forked."""
    case = next(c for c in CASES if c.name == name)
    case.check(subprocess_cli(hostile_arena, "run", f"cases/{case.path.name}", *case.args, "--no-progress"))


def test_good_run_survives(hostile_arena: Path, run_results: dict[str, Result]) -> None:
    """After every hostile run, the good run is whole: a resume finds every row finished."""
    res = subprocess_cli(hostile_arena, "run", "cases/good.yaml", "--json", "--no-progress")
    assert res.code == 0, res.stderr
    assert '"ran": 0' in res.stdout and '"skipped": 3' in res.stdout

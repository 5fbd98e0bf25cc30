"""Hostile arguments to the other commands: ``eval`` (files, JSONL, ``--lp``, ``--option``),
``schema -o`` and ``templates show``. Each case runs in-process under a time limit; every fifth
also in a forked process of its own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.hostile.harness import check_error, forked_cli, inprocess_cli


@dataclass
class CliCase:
    name: str
    argv: list[str]  # "{d}" is the case's directory, relative to the arena root
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)


OK_TXT = {"h.txt": "Hello world.\nA cat.\n", "r.txt": "Hello world.\nThe cat.\n"}
TXT = ["eval", "--hyp", "{d}/h.txt", "--ref", "{d}/r.txt"]
JL = ["eval", "--jsonl", "{d}/in.jsonl"]


def jl(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


CASES: list[CliCase] = [
    # --lp: BCP-47 codes on both sides
    *[CliCase(f"lp_{i}", [*TXT, "--lp", lp], [f"--lp '{lp}'", *parts], OK_TXT) for i, (lp, parts) in enumerate([
        ("Chinese-English", ["did you mean 'zh'"]), ("de-xx", ["'xx' is not a BCP-47"]),
        ("zh-Hant-en", ["'Hant-en' is not"]), ("de:", ["expected source-target"]), ("-en", ["expected source-target"]),
        ("german:english", ["did you mean 'de'"])])],
    # --option: types, ranges, names, bounded YAML
    *[CliCase(f"option_{i}", [*TXT, "--metrics", "bleu,chrf,ter", "-o", opt], parts, OK_TXT)
      for i, (opt, parts) in enumerate([
          ("chrf.char_order=-1", ["chrf: option 'char_order'"]), ("chrf.char_order=x", ["valid integer"]),
          ("bleu.tokenize=nope", ["unknown tokenizer 'nope'"]), ("bleu.tokenise=intl", ["did you mean 'tokenize'"]),
          ("ter.normalized=maybe", ["normalized"]), ("bleu.smooth_method=x", ["smooth_method 'x'"]),
          ("bleu.max_ngram_order=[&a [1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b], "
           "&d [*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e]]",
           ["--option bleu.max_ngram_order", "YAML bomb"]),
          ("bleu.lowercase={a: 1, a: 2}", ["duplicate key 'a'"]),
          ("comet.model=x", ["metric 'comet' is not in --metrics"]), ("=1", ["expected metric.key=value"])])],
    CliCase("option_twice", [*TXT, "-o", "bleu.lowercase=true", "-o", "bleu.lowercase=false"], ["given twice"], OK_TXT),
    CliCase("metric_unknown", [*TXT, "--metrics", "bleu,chrf++"], ["unknown metric 'chrf++'"], OK_TXT),
    CliCase("metric_empty", [*TXT, "--metrics", ","], ["--metrics is empty"], OK_TXT),
    # files that are not text files
    CliCase("hyp_fifo", ["eval", "--hyp", "cases/generated/fifo.jsonl", "--ref", "{d}/r.txt"], ["is a FIFO"], OK_TXT),
    CliCase("ref_device", ["eval", "--hyp", "{d}/h.txt", "--ref", "/dev/zero"], ["/dev/zero is a device"], OK_TXT),
    CliCase("src_directory", [*TXT, "--src", "cases/generated/a_directory"], ["a_directory is a directory"], OK_TXT),
    CliCase("hyp_dangling", ["eval", "--hyp", "cases/generated/dangling.jsonl", "--ref", "{d}/r.txt"],
            ["symbolic link to a missing file"], OK_TXT),
    CliCase("jsonl_fifo", ["eval", "--jsonl", "cases/generated/fifo.jsonl"], ["is a FIFO"]),
    # JSONL values
    *[CliCase(f"jsonl_{i}", JL, ["in.jsonl:2:", *parts], {"in.jsonl": jl('{"hypothesis": "a", "reference": "a"}', row)})
      for i, (row, parts) in enumerate([
          ('{"hypothesis": NaN, "reference": "a"}', ["NaN is not a JSON number"]),
          ('{"hypothesis": "a", "reference": "a", "score": Infinity}', ["Infinity"]),
          ('{"hypothesis": "a", "reference": "a", "score": 1e999}', ["too large"]),
          ('{"hypothesis": "a", "hypothesis": "b", "reference": "a"}', ["duplicate key 'hypothesis'"]),
          ('{"hypothesis": ["a"], "reference": "a"}', ["field 'hypothesis' must be a string"]),
          ('{"hypothesis": "a", "reference": [1, 2]}', ["field 'reference' must be a string or a list of strings"]),
          ('{"hypothesis": "a", "reference": {"x": "y"}}', ["field 'reference'"]),
          ('{"hypothesis": 5, "reference": "a"}', ["must be a string"]),
          ('[' * 100000 + ']' * 100000, ["nested deeper than"]),
          ('{"hypothesis": "a", "reference": "a", "d": ' + '[' * 80 + ']' * 80 + '}', ["nested deeper than"])])],
    # schema -o: one line for paths that cannot be written
    CliCase("schema_no_dir", ["schema", "-o", "{d}/missing/dir/schema.json"], ["--out", "cannot write",
                                                                             "No such file"]),
    CliCase("schema_is_dir", ["schema", "-o", "cases/generated/a_directory"], ["--out", "cannot write"]),
    CliCase("schema_device_full", ["schema", "-o", "/dev/full"], ["--out", "cannot write"]),
    CliCase("schema_under_file", ["schema", "-o", "cases/good.yaml/schema.json"], ["--out", "cannot write"]),
    # templates show: the same strict reading as pipelines
    CliCase("tpl_fifo", ["templates", "show", "cases/generated/fifo.jsonl"], ["FIFO"]),
    CliCase("tpl_two_messages", ["templates", "show", "{d}/t.yaml"], ["t.yaml:4:", "duplicate key 'messages'"],
            {"t.yaml": "name: x\nmessages:\n  - {role: user, content: a}\nmessages:\n  - {role: system, content: b}\n"}),
    CliCase("tpl_dup_role", ["templates", "show", "{d}/t.yaml"], ["t.yaml:2:", "duplicate key 'role'"],
            {"t.yaml": "messages:\n  - {role: user, role: system, content: a}\n"}),
    CliCase("tpl_bomb", ["templates", "show", "{d}/t.yaml"], ["YAML bomb"],
            {"t.yaml": "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nmessages: [*e]\n"}),
    CliCase("tpl_bad_role_line", ["templates", "show", "{d}/t.yaml"], ["t.yaml:4:", "messages[1].role"],
            {"t.yaml": "name: x\nmessages:\n  - {role: user, content: a}\n  - {role: robot, content: b}\n"}),
    CliCase("tpl_variables_type", ["templates", "show", "{d}/t.yaml"], ["t.yaml:1:", "'variables' must be a list"],
            {"t.yaml": "variables: source\nmessages:\n  - {role: user, content: a}\n"}),
    CliCase("tpl_bad_utf8", ["templates", "show", "{d}/t.yaml"], ["t.yaml:2:", "not valid UTF-8"],
            {"t.yaml": b"messages:\n  - {role: user, content: caf\xe9}\n"}),
    CliCase("tpl_python_tag", ["templates", "show", "{d}/t.yaml"], ["t.yaml:1:"],
            {"t.yaml": "name: !!python/name:os.system x\nmessages: [{role: user, content: a}]\n"}),
]


def _write(root: Path, case: CliCase) -> list[str]:
    d = root / "cases" / "cli" / case.name
    d.mkdir(parents=True, exist_ok=True)
    for rel, content in case.files.items():
        p = d / rel
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return [a.replace("{d}", f"cases/cli/{case.name}") for a in case.argv]


def test_enough_cases() -> None:
    assert len(CASES) >= 45, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_in_process(case: CliCase, hostile_arena: Path) -> None:
    argv = _write(hostile_arena, case)
    check_error(inprocess_cli(hostile_arena, *argv), case.expect)


def test_forked_subset(hostile_arena: Path) -> None:
    subset = CASES[::5]
    argvs = [_write(hostile_arena, c) for c in subset]
    for case, res in zip(subset, forked_cli(hostile_arena, argvs)):
        check_error(res, case.expect)


def test_eval_still_scores(hostile_arena: Path) -> None:
    """The same inputs, well-formed, score; zh-Hant:en and a colon form are accepted."""
    case = CliCase("good", [*TXT, "--lp", "zh-Hant:en", "--json"], [], OK_TXT)
    res = inprocess_cli(hostile_arena, *_write(hostile_arena, case))
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["lp"] == "zh-Hant:en"

"""``promptweave report`` / ``compare`` on damaged and hand-edited run directories: every bad
file gives one line naming the file, line or field (never a traceback), and odd values that are
valid JSON (NaN, huge integers, lone surrogates) neither break the page nor count as scores."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptweave.errors import DataError, PromptweaveError
from promptweave.report import load_run, write_report
from promptweave.report.compare import systems_from_runs
from promptweave.report.rundata import columns
from tests.helpers import cli
from tests.report.runs import wmt_run

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run: 4 WMT22 items x 5 systems, BLEU/chrF, two judges, a human score."""
    return wmt_run(tmp_path_factory.mktemp("base"), items=4)


Records = list[dict[str, Any]]


def _copy(base: Path, tmp: Path) -> Path:
    d = tmp / "run"
    shutil.copytree(base, d)
    return d


def _records(d: Path) -> Records:
    return [json.loads(x) for x in (d / "results.jsonl").read_text(encoding="utf-8").splitlines() if x]


def _write_records(d: Path, recs: Records) -> None:
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")


def _edit_json(d: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((d / name).read_text(encoding="utf-8"))
    edit(data)
    (d / name).write_text(json.dumps(data), encoding="utf-8")


def _each(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        recs = _records(d)
        for r in recs:
            edit(r)
        _write_records(d, recs)
    return apply


# damage -> (what the one-line error must name)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "outputs a list": (_each(lambda r: r.__setitem__("outputs", [1, 2])), r"results\.jsonl:1: .*'outputs'"),
    "fields a string": (_each(lambda r: r.__setitem__("fields", "x")), r"results\.jsonl:1: .*'fields'"),
    "a step output a string": (_each(lambda r: r["outputs"].__setitem__("mqm", "x")),
                               r"results\.jsonl:1: .*'outputs\.mqm'"),
    "index null": (_each(lambda r: r.__setitem__("index", None)), r"results\.jsonl:1: .*'index'"),
    "key a list": (_each(lambda r: r.__setitem__("key", [1])), r"results\.jsonl:1: .*'key'"),
    "no status": (_each(lambda r: r.pop("status")), r"results\.jsonl:1: .*'status'"),
    "not UTF-8": (lambda d: (d / "results.jsonl").write_bytes(b'{"key": "\xff"}\n'), r"results\.jsonl:1: .*UTF-8"),
    "results.jsonl a directory": (lambda d: ((d / "results.jsonl").unlink(), (d / "results.jsonl").mkdir()),
                                  r"results\.jsonl: not a regular file"),
    "a line nested too deeply": (lambda d: (d / "results.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n"),
                                 r"results\.jsonl:1: not valid JSON \(nested too deeply\)"),
    "scores.json a FIFO": (lambda d: ((d / "scores.json").unlink(), os.mkfifo(d / "scores.json")),
                           r"scores\.json: not a regular file"),  # reading it would wait forever
    "scores metrics a list": (lambda d: _edit_json(d, "scores.json", lambda s: s.__setitem__("metrics", [1])),
                              r"scores\.json: field 'metrics'"),
    "scores segment row a string": (
        lambda d: _edit_json(d, "scores.json", lambda s: s.__setitem__("segments", {"k": "x"})),
        r"scores\.json: field 'segments\.k'"),
    "scores group corpus a string": (
        lambda d: _edit_json(d, "scores.json", lambda s: s["metrics"]["bleu"]["groups"]["Online-W"].__setitem__(
            "corpus", "x")), r"scores\.json: field 'metrics\.bleu\.groups\.Online-W\.corpus'"),
    "manifest config a list": (lambda d: _edit_json(d, "manifest.json", lambda m: m.__setitem__("config", [1])),
                               r"manifest\.json: field 'config'"),
    "manifest scoring a string": (
        lambda d: _edit_json(d, "manifest.json", lambda m: m["config"].__setitem__("scoring", "x")),
        r"manifest\.json: field 'config\.scoring'"),
    "manifest usage cost a string": (
        lambda d: _edit_json(d, "manifest.json", lambda m: m["usage"]["default"].__setitem__("cost", "x")),
        r"manifest\.json: field 'usage\.default\.cost'"),
    "manifest bad metric option": (
        lambda d: _edit_json(d, "manifest.json", lambda m: m["config"].__setitem__("metrics", [{"bleu": {"tokenize": "?"}}])),
        r"manifest\.json: field 'config\.metrics' \(bleu\)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_are_one_line_errors(base: Path, tmp_path: Path, damage: str) -> None:
    apply, names = DAMAGE[damage]
    d = _copy(base, tmp_path)
    apply(d)
    with pytest.raises(DataError) as report_error:
        write_report(d, 100)
    with pytest.raises(DataError) as compare_error:
        systems_from_runs([load_run(d)])
    for exc in (report_error.value, compare_error.value):
        assert re.search(names, str(exc)), str(exc)
        assert "\n" not in str(exc)


def test_damaged_run_on_the_command_line(base: Path, tmp_path: Path) -> None:
    d = _copy(base, tmp_path)
    DAMAGE["a step output a string"][0](d)
    for args in (["report", str(d)], ["compare", str(d), "--html", ""]):
        res = cli(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines() == [res.stderr.strip()]
        assert "results.jsonl:1: not a results row ('outputs.mqm' is a string" in res.stderr
    res = cli("compare", str(base), "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert res.returncode == 2 and "cannot be written" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("seed", ["abc", "-3", "1.5"])
def test_a_bad_seed_is_one_line(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: str) -> None:
    monkeypatch.setenv("SACREBLEU_SEED", seed)
    with pytest.raises(PromptweaveError, match=r"SACREBLEU_SEED=.*non-negative integer"):
        write_report(_copy(base, tmp_path), 100)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10 ** 400, True])
def test_odd_numbers_are_no_scores_and_the_page_data_parses(base: Path, tmp_path: Path, value: Any) -> None:
    d = _copy(base, tmp_path)
    recs = _records(d)
    n_da = sum(1 for r in recs if r["status"] == "ok" and isinstance(r["outputs"]["da"].get("value"), (int, float)))
    odd = recs[0]
    odd["outputs"]["da"]["value"] = value
    odd["fields"]["mqm_score"] = value
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    run = load_run(d)
    cols = {c.name: c for c in columns(run)}
    assert sum(len(v) for v in cols["da"].values.values()) == n_da - 1  # the odd value is left out
    assert sum(len(v) for v in cols["mqm_score"].values.values()) == len(recs) - 1
    html = write_report(d, 100).read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="pw-data">(.*?)</script>', html, re.S).group(1)

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the page's JSON: JSON.parse refuses it")
    data = json.loads(blob, parse_constant=refuse)  # as strict as the browser's JSON.parse
    assert len(data["rows"]) == len(recs)


def test_lone_surrogates_in_records_reach_the_page(base: Path, tmp_path: Path) -> None:
    d = _copy(base, tmp_path)
    recs = _records(d)
    recs[0]["fields"]["hypothesis"] = "bad \ud800 text"
    # as the run store writes records: lone surrogates as raw (surrogatepass) bytes
    (d / "results.jsonl").write_bytes(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
                                               for r in recs))
    html = write_report(d, 100).read_bytes().decode("utf-8")  # valid UTF-8
    assert "bad \ufffd text" in html
    res = cli("compare", str(d), "--html", str(tmp_path / "c.html"))
    assert res.returncode == 0, res.stderr


def test_retried_rows_and_a_torn_last_line(base: Path, tmp_path: Path) -> None:
    d = _copy(base, tmp_path)
    recs = _records(d)
    retried = copy.deepcopy(recs[1])
    retried.update(status="error", error={"step": "mt", "message": "boom"})
    text = "".join(json.dumps(r) + "\n" for r in recs + [retried]) + json.dumps(recs[2])[:40]
    (d / "results.jsonl").write_text(text, encoding="utf-8")
    run = load_run(d)
    assert len(run.records) == len(recs)
    assert next(r for r in run.records if r["key"] == retried["key"])["status"] == "error"  # the last record wins
    write_report(d, 100)


def _mqm(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda r: edit(r["outputs"]["mqm"])


def _first_call(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return _mqm(lambda o: edit(o["calls"][0]))


# fields inside a step output the page reads without trusting their type: a value of another
# type is left out (no flag, no call, no tokens), never the end of the page
ODD_INSIDE: dict[str, Callable[[dict[str, Any]], None]] = {
    "flags a number": _mqm(lambda o: o.__setitem__("flags", 5)),
    "flags with null": _mqm(lambda o: o.__setitem__("flags", ["x", None, 1])),
    "removed a number": _mqm(lambda o: o.__setitem__("removed", 5)),
    "calls a number": _mqm(lambda o: o.__setitem__("calls", 5)),
    "tokens a string": _first_call(lambda c: c.__setitem__("prompt_tokens", "many")),
    "tokens NaN": _first_call(lambda c: c.__setitem__("completion_tokens", float("nan"))),
    "latency past a float": _first_call(lambda c: c.__setitem__("latency_s", 10 ** 400)),
    "references of numbers": lambda r: r["fields"].__setitem__("reference", [1, "x"]),
    "one huge judge value": _mqm(lambda o: o.__setitem__("value", 10 ** 19)),
}


@pytest.mark.parametrize("odd", list(ODD_INSIDE))
def test_odd_values_inside_step_outputs_do_not_end_the_page(base: Path, tmp_path: Path, odd: str) -> None:
    d = _copy(base, tmp_path)
    recs = _records(d)
    for r in recs:
        ODD_INSIDE[odd](r)
    _write_records(d, recs)
    html = write_report(d, 100).read_text(encoding="utf-8")
    assert html.count('"sys":') == len(recs)  # every row is in the segment browser
    systems_from_runs([load_run(d)])


def test_the_report_command_bounds_the_page_as_the_finish_does(base: Path, tmp_path: Path) -> None:
    d = _copy(base, tmp_path)
    res = cli("report", str(d), env={**os.environ, "PROMPTWEAVE_REPORT_ROWS": "7"})
    assert res.returncode == 0, res.stderr
    html = (d / "report.html").read_text(encoding="utf-8")
    assert f"This run has {len(_records(d))} rows; this page covers the first 7</strong>" in html
    assert html.count('"sys":') == 7
    for bad in ("abc", "-1"):
        res = cli("report", str(d), env={**os.environ, "PROMPTWEAVE_REPORT_ROWS": bad})
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip() == f"error: PROMPTWEAVE_REPORT_ROWS='{bad}': not a whole number >= 0; " \
                                     "unset it for the default (20000)"

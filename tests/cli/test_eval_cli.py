"""``promptweave eval`` and ``promptweave meta-eval`` as a user meets them: official WMT22 numbers
reproduced, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import promptweave.cli.evaluate  # noqa: F401  (registers ``eval`` on the app)
import promptweave.cli.meta  # noqa: F401  (registers ``meta-eval``)
from promptweave.cli import main


def shared_data() -> Path:
    env = os.environ.get("PROMPTWEAVE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


DATA = shared_data()
needs_shared = pytest.mark.skipif(not (DATA / "wmt22").is_dir(), reason=f"shared data not found: {DATA} "
                                  "(set PROMPTWEAVE_SHARED_DATA to the shared/data folder)")


@pytest.fixture
def run(capsys, monkeypatch):
    """Run the CLI in-process through ``main()``; returns (exit code, stdout, stderr)."""

    def _run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["promptweave", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ eval: official WMT22 scores

@needs_shared
@pytest.mark.shared_data
@pytest.mark.parametrize("lp, bleu, chrf", [("en-de", 37.79, 64.32), ("zh-en", 33.51, 61.14)])
def test_reproduces_official_wmt22_scores(run, lp, bleu, chrf):
    # JDExploreAcademy's WMT22 submission; BLEU uses the target-side tokenizer (13a for de and en)
    code, out, err = run("eval", "--jsonl", DATA / "wmt22" / f"jdexplore_wmt22.{lp}.jsonl", "--lp", lp,
                         "--metrics", "bleu,chrf", "--json")
    assert code == 0, err
    scores = {r["metric"]: r for r in json.loads(out)["results"]}
    assert f"{scores['bleu']['score']:.2f}" == f"{bleu:.2f}"
    assert f"{scores['chrf']['score']:.2f}" == f"{chrf:.2f}"
    assert "tok:13a" in scores["bleu"]["signature"] and "nrefs:1" in scores["bleu"]["signature"]


# ------------------------------------------------------------------ eval: text files


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_text_files_table_and_json(run, tmp_path):
    ref = write(tmp_path / "ref.txt", ["a b c d", "e f g x"])
    good = write(tmp_path / "good.txt", ["a b c d", "e f g x"])
    other = write(tmp_path / "other.txt", ["a b c d", "e f g h"])
    code, out, err = run("eval", "--hyp", good, "--hyp", other, "--ref", ref, "--metrics", "bleu,chrf", "--json",
                         "--segments")
    assert code == 0, err
    res = {(r["system"], r["metric"]): r for r in json.loads(out)["results"]}
    assert res[("good.txt", "bleu")]["score"] == pytest.approx(100.0)
    # by hand: precisions 7/8, 5/6, 3/4, 1/2 -> (105/384)^(1/4); segment 2: 0.125^(1/4) (exp smoothing)
    assert res[("other.txt", "bleu")]["score"] == pytest.approx(100 * (105 / 384) ** 0.25)
    assert res[("other.txt", "bleu")]["segments"] == pytest.approx([100.0, 100 * 0.125 ** 0.25])
    code, out, err = run("eval", "--hyp", other, "--ref", ref, "--metrics", "bleu,ter")
    assert code == 0, err
    assert "other.txt" in out and "72.31" in out and "bleu: nrefs:1|case:mixed|eff:no|tok:13a" in out
    assert "ter: nrefs:1|case:lc|tok:tercom" in out


def test_multiple_references_and_options(run, tmp_path):
    hyp = write(tmp_path / "hyp.txt", ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."])
    ref1 = write(tmp_path / "r1.txt", ["The dog bit the man.", "It was not unexpected.", "The man bit him first."])
    ref2 = write(tmp_path / "r2.txt", ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."])
    code, out, err = run("eval", "--hyp", hyp, "--ref", ref1, "--ref", ref2, "--metrics", "bleu,chrf",
                         "-o", "bleu.tokenize=intl", "-o", "chrf.word_order=2", "--json")
    assert code == 0, err
    res = {r["metric"]: r for r in json.loads(out)["results"]}
    assert res["bleu"]["score"] == pytest.approx(43.91623493, abs=1e-6)  # sacrebleu test_bleu.py
    assert "nrefs:2" in res["bleu"]["signature"] and "tok:intl" in res["bleu"]["signature"]
    assert "nw:2" in res["chrf"]["signature"]


def test_jsonl_fields(run, tmp_path):
    rows = [{"src": "x", "mt1": "a b c d", "mt2": "a b", "gold": ["a b c d", "a b"]}]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    code, out, err = run("eval", "--jsonl", path, "--hyp-field", "mt1", "--hyp-field", "mt2", "--ref-field", "gold",
                         "--src-field", "src", "--metrics", "chrf", "--json")
    assert code == 0, err
    res = {r["system"]: r["score"] for r in json.loads(out)["results"]}
    assert res == {"mt1": pytest.approx(100.0), "mt2": pytest.approx(100.0)}  # each matches one reference


@pytest.mark.parametrize("setup, args, expected", [
    (lambda p: (write(p / "h.txt", ["a", "b"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt"], ["line counts differ", "h.txt: 2", "r.txt: 1"]),
    (lambda p: None, ["--hyp", "{p}/nope.txt", "--ref", "{p}/nope.txt"], ["nope.txt does not exist"]),
    (lambda p: ((p / "h.txt").write_bytes(b"ok\n\xff\xfe\n"), write(p / "r.txt", ["a", "b"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt"], ["h.txt:2: invalid UTF-8", "re-encode"]),
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "--metrics", "bleu,blue"], ["unknown metric 'blue'", "did you mean 'bleu'"]),
    (lambda p: write(p / "in.jsonl", ['{"hypothesis": "a", "reference": "a"}', '{"hyp": "b"}']),
     ["--jsonl", "{p}/in.jsonl"], ["in.jsonl:2: no field 'hypothesis'", "--hyp-field"]),
    (lambda p: write(p / "in.jsonl", ["{not json"]), ["--jsonl", "{p}/in.jsonl"], ["in.jsonl:1: invalid JSON"]),
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "-o", "bleu.tokenize"], ["expected metric.key=value"]),
    (lambda p: write(p / "h.txt", ["a"]), ["--hyp", "{p}/h.txt"], ["needs references", "--ref"]),
    (lambda p: None, [], ["nothing to score"]),
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "--lp", "zhen"], ["--lp 'zhen'", "zh-en"]),
    # found by the adversarial probe: each of these used to be accepted, silently
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--hyp", "{p}/./h.txt", "--ref", "{p}/r.txt"], ["--hyp", "h.txt is given twice"]),
    (lambda p: write(p / "in.jsonl", ['{"hypothesis": "a", "reference": "a"}']),
     ["--jsonl", "{p}/in.jsonl", "--hyp-field", "hypothesis", "--hyp-field", "hypothesis"],
     ["--hyp-field hypothesis is given twice"]),
    (lambda p: write(p / "in.jsonl", ['{"hypothesis": "a", "reference": "a"}', '{"hypothesis": "a", "reference": []}']),
     ["--jsonl", "{p}/in.jsonl"], ["in.jsonl:2: field 'reference' is an empty list"]),
    (lambda p: (write(p / "h.txt", ["a b c"]), write(p / "r.txt", ["a x c"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "-o", "bleu.smooth_method=floor", "-o", "bleu.smooth_value=.inf"],
     ["option 'smooth_value'", "finite"]),
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "--metrics", "bleu,chrf,bleu"], ["'bleu' is given twice"]),
    (lambda p: (write(p / "h.txt", ["a"]), write(p / "r.txt", ["a"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt", "--segments"], ["--segments", "add --json"]),
    (lambda p: ((p / "h.txt").write_bytes(b"a b\rc d\r"), write(p / "r.txt", ["a b", "c d"])),
     ["--hyp", "{p}/h.txt", "--ref", "{p}/r.txt"], ["line counts differ", "h.txt has carriage returns", "\\n"]),
])
def test_eval_errors(run, tmp_path, setup, args, expected):
    setup(tmp_path)
    code, _, err = run("eval", *[a.format(p=tmp_path) for a in args])
    line = one_line_error(code, err)
    for text in expected:
        assert text in line


def test_systems_with_the_same_file_name_are_all_scored(run, tmp_path, monkeypatch):
    # a/h.txt, b/h.txt and ./h.txt: three systems, none replacing another in the results
    for sub, line in (("a", "a b c d"), ("b", "a b c x"), (".", "x y z w")):
        (tmp_path / sub).mkdir(exist_ok=True)
        write(tmp_path / sub / "h.txt", [line])
    write(tmp_path / "r.txt", ["a b c d"])
    monkeypatch.chdir(tmp_path)
    code, out, err = run("eval", "--hyp", "a/h.txt", "--hyp", "b/h.txt", "--hyp", "h.txt", "--ref", "r.txt",
                         "--metrics", "chrf", "--json")
    assert code == 0, err
    scores = {r["system"]: r["score"] for r in json.loads(out)["results"]}
    assert list(scores) == ["h.txt", "b/h.txt", "h.txt (2)"]
    assert scores["h.txt"] == pytest.approx(100.0) and scores["h.txt (2)"] < scores["b/h.txt"] < 100


# ------------------------------------------------------------------ meta-eval

PUBLISHED = {  # shared/data/README.md
    "BLEU-refA": (0.145, 41.6), "chrF-refA": (0.147, 42.1), "COMET-22-refA": (0.428, 53.6),
    "BLEURT-20-refA": (0.361, 48.9), "metricx_xxl_MQM_2020-refA": (0.427, 54.4),
}


@pytest.mark.skipif(not (DATA / "metaeval").is_dir(), reason=f"shared data not found: {DATA}")
@pytest.mark.shared_data
def test_meta_eval_reproduces_published_table(run):
    code, out, err = run("meta-eval", "--tsv", DATA / "metaeval" / "wmt22_zhen_seg_scores.tsv", "--human", "mqm",
                         "--metrics", ",".join(PUBLISHED), "--json")
    assert code == 0, err
    got = {r["metric"]: r for r in json.loads(out)["results"]}
    for metric, (kendall, acc_eq) in PUBLISHED.items():
        assert f"{got[metric]['seg_kendall']:.3f}" == f"{kendall:.3f}", metric
        assert f"{100 * got[metric]['acc_eq']:.1f}" == f"{acc_eq:.1f}", metric
    code, out, err = run("meta-eval", "--tsv", DATA / "metaeval" / "wmt22_zhen_seg_scores.tsv",
                         "--metrics", "COMET-22-refA")
    assert code == 0 and "0.428" in out and "53.6" in out and "acc_eq over 15 systems incl. refB" in out


def score_files(tmp_path: Path) -> tuple[Path, Path]:
    human = {"A": [0, -1, -2, -1], "B": [-1, -2, 0, 0], "C": [-5, -1, -1, -3], "refA": [0] * 4}
    metric = {"A": [5, 4, 3, 4], "B": [4, 3, 5, 6], "C": [1, 4, 4, 2], "refA": [None] * 4}
    paths = []
    for name, scores in (("mqm", human), ("M-refA", metric)):
        path = tmp_path / f"xx-yy.{name}.seg.score"
        path.write_text("".join(f"{s}\t{v}\n" for s, vals in scores.items() for v in vals))
        paths.append(path)
    return paths[0], paths[1]


def test_meta_eval_score_files_and_jsonl(run, tmp_path):
    human, metric = score_files(tmp_path)
    code, out, err = run("meta-eval", "--human-file", human, "--metric-file", metric, "--json", "--bootstrap", "50")
    assert code == 0, err
    res = json.loads(out)["results"][0]
    assert res["metric"] == "M-refA" and res["systems"]["seg_kendall"] == ["A", "B", "C"]
    assert set(res["ci"]) >= {"seg_kendall", "acc_eq"} and res["bootstrap"] == 50
    rows = [{"system": s, "seg_id": i, "mqm": h, "judge": m, "note": "text is ignored"}
            for s, hs, ms in (("A", [0, -1], [5, 4]), ("B", [-2, -3], [3, 2]), ("C", [-4, -5], [1, 0]))
            for i, (h, m) in enumerate(zip(hs, ms))]
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run("meta-eval", "--jsonl", path, "--json")
    assert code == 0, err
    res = json.loads(out)["results"][0]
    # metric order equals human order over all six cells and all three systems
    assert res["metric"] == "judge" and res["seg_kendall"] == pytest.approx(1.0) and res["sys_acc"] == 1.0


@pytest.mark.parametrize("args, expected", [
    ([], "exactly one input"),
    (["--tsv", "{p}/a.tsv", "--jsonl", "{p}/a.jsonl"], "exactly one input"),
    (["--tsv", "{p}/missing.tsv"], "missing.tsv: file not found"),
    (["--human-file", "{human}"], "needs at least one --metric-file"),
    (["--human-file", "{human}", "--metric-file", "X={p}/nope.seg.score"], "nope.seg.score: file not found"),
    (["--human-file", "{human}", "--metric-file", "{metric}", "--refs", "some"], "--refs 'some'"),
    (["--human-file", "{human}", "--metric-file", "{metric}", "--metrics", "Y"], "no scores for Y"),
])
def test_meta_eval_errors(run, tmp_path, args, expected):
    human, metric = score_files(tmp_path)
    code, _, err = run("meta-eval", *[a.format(p=tmp_path, human=human, metric=metric) for a in args])
    assert expected in one_line_error(code, err)

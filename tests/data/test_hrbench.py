"""HR-Bench files, answer letters by rule, and cycle-averaged / strict accuracy."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from promptweave.config import DataConfig
from promptweave.data import load_rows
from promptweave.data.hrbench import parse_letter
from promptweave.errors import DataError
from promptweave.vision.report import step_scores

OPTS = {"A": "red", "B": "green", "C": "top left", "D": "bottom right"}


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(C)", "C"), ("D. bottom right", "D"), ("**A**", "A"), ("The answer is C.", "C"),
    ("Answer: B", "B"), ("green", "B"), ("It is in the top left.", "C"),
    ("red or green", None), ("", None), ("I cannot tell.", None), ("E", None),
])
def test_parse_letter(text: str, letter: str | None) -> None:
    got, status = parse_letter(text, OPTS)
    assert got == letter and status == ("ok" if letter else "failed")


def _tsv(tmp: Path, rows: list[list[str]]) -> Path:
    header = ["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"]
    p = tmp / "hr.tsv"
    p.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_tsv_images_stored_once_and_shared_by_index(tmp_path: Path) -> None:
    from tests.vision.helpers import noise, png_bytes

    b64 = base64.b64encode(png_bytes(noise(80, 60))).decode()
    p = _tsv(tmp_path, [["0", "Q?", "A", "FSP", "a", "b", "c", "d", "cycle0", b64],
                        ["1", "Q?", "B", "FSP", "b", "a", "c", "d", "cycle1", "0"]])
    rows = load_rows(DataConfig(path=str(p), key="index"))
    assert [k for k, _ in rows] == ["0", "1"]
    paths = {f["image"] for _, f in rows}
    assert len(paths) == 1 and Path(next(iter(paths))).read_bytes() == base64.b64decode(b64)
    assert Path(next(iter(paths))).parent == tmp_path / "hr.images"


def test_tsv_bad_image_cells(tmp_path: Path) -> None:
    p = _tsv(tmp_path, [["0", "Q?", "A", "FSP", "a", "b", "c", "d", "cycle0", "7"]])
    with pytest.raises(DataError, match=r"hr.tsv:2: image '7' is neither base64 nor the index"):
        load_rows(DataConfig(path=str(p)))
    p = _tsv(tmp_path, [["0", "Q?", "A", "FSP", "a", "b", "c", "d", "cycle0", "!" * 100]])
    with pytest.raises(DataError, match="not valid base64"):
        load_rows(DataConfig(path=str(p)))


def test_other_tsv_files_are_not_claimed(tmp_path: Path) -> None:
    p = tmp_path / "mt.tsv"
    p.write_text("source\treference\nHallo\tHello\n", encoding="utf-8")
    assert load_rows(DataConfig(path=str(p))) == [("0", {"source": "Hallo", "reference": "Hello"})]


def _rec(q: str, cat: str, cycle: int, correct: bool, calls: int = 1) -> dict:
    return {"fields": {"question": q, "category": cat, "cycle_category": f"cycle{cycle}", "image": q, "answer": "A"},
            "outputs": {"s": {"correct": correct, "image_sha256": q, "usage": {"calls": calls, "prompt_tokens": 10,
                                                                              "completion_tokens": 2}}}}


def test_accuracy_is_averaged_over_cycles_and_strict_needs_every_cycle() -> None:
    recs = [_rec("q1", "FSP", c, True) for c in range(4)]                 # all right
    recs += [_rec("q2", "FSP", c, c != 3) for c in range(4)]              # one cycle wrong
    recs += [_rec("q3", "FCP", c, c == 0, calls=3) for c in range(4)]     # right once
    s = step_scores(recs, "s")
    assert s["accuracy"]["FSP"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert s["accuracy"]["FCP"] == pytest.approx(0.25)
    assert s["accuracy"]["all"] == pytest.approx((1 + 2 / 3 + 2 / 3 + 1 / 3) / 4)  # per-cycle means, averaged
    assert s["strict"] == {"FCP": 0.0, "FSP": 0.5, "all": pytest.approx(1 / 3)}
    assert s["questions"] == 3 and s["images"] == 3
    assert s["calls_per_image"] == pytest.approx((4 + 4 + 12) / 3)


def test_tsv_quoted_as_pandas_writes_it(tmp_path: Path) -> None:
    from tests.vision.helpers import noise, png_bytes

    b64 = base64.b64encode(png_bytes(noise(20, 20))).decode()
    p = _tsv(tmp_path, [["0", '"He said ""hi""\tthen left?"', "A", "FSP", "a", "b", "c", "d", "cycle0", b64]])
    [(_, row)] = load_rows(DataConfig(path=str(p)))
    assert row["question"] == 'He said "hi"\tthen left?'

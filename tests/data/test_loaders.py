from __future__ import annotations

from pathlib import Path

import pytest

from promptweave.config import DataConfig
from promptweave.data import load_rows
from promptweave.errors import DataError
from tests.helpers import write_jsonl


def rows(tmp: Path, **cfg: object) -> list[tuple[str, dict]]:
    return load_rows(DataConfig(**cfg), tmp)  # type: ignore[arg-type]


def test_jsonl_with_field_mapping_key_and_limit(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"src": f"s{i}", "ref": f"r{i}", "id": f"x{i}"} for i in range(5)])
    out = rows(tmp_path, path="d.jsonl", fields={"source": "src", "reference": "ref"}, key="id", limit=3)
    assert [k for k, _ in out] == ["x0", "x1", "x2"]
    assert out[1][1]["source"] == "s1" and out[1][1]["reference"] == "r1" and out[1][1]["src"] == "s1"


def test_tsv_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "d.tsv").write_text("source\treference\na\tA\nb\tB\n", encoding="utf-8")
    (tmp_path / "d.csv").write_text('source,reference\n"a, with comma",A\nb,B\n', encoding="utf-8")
    (tmp_path / "d.json").write_text('[{"source": "a"}, {"source": "b"}]', encoding="utf-8")
    assert [r["reference"] for _, r in rows(tmp_path, path="d.tsv")] == ["A", "B"]
    assert rows(tmp_path, path="d.csv")[0][1]["source"] == "a, with comma"
    assert [r["source"] for _, r in rows(tmp_path, path="d.json")] == ["a", "b"]


def test_plain_parallel_text(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("one\ntwo\n", encoding="utf-8")
    out = rows(tmp_path, files={"source": "src.txt", "reference": "ref.txt"})
    assert [r for _, r in out] == [{"source": "eins", "reference": "one"}, {"source": "zwei", "reference": "two"}]
    (tmp_path / "ref.txt").write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match="different line counts"):
        rows(tmp_path, files={"source": "src.txt", "reference": "ref.txt"})


def test_explode_systems(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": "s1", "source": "x", "translations": [{"system": "A", "hypothesis": "a"},
                                                     {"system": "B", "hypothesis": "b"}]},
        {"id": "s2", "source": "y", "translations": [{"system": "A", "hypothesis": "c"}]},
    ])
    out = rows(tmp_path, path="d.jsonl", key="id", explode="translations", limit=1)
    assert [k for k, _ in out] == ["s1:A", "s1:B"]
    assert out[1][1]["hypothesis"] == "b" and out[1][1]["source"] == "x" and "translations" not in out[1][1]


@pytest.mark.parametrize("content, cfg, message", [
    (b"", {}, "no rows"),
    (b'{"source": "a"}\n{"source": \n', {}, "d.jsonl:2: invalid JSON"),
    (b'{"source": "a"}\n[1, 2]\n', {}, "must be a JSON object"),
    (b'{"source": "caf\xe9"}\n', {}, "d.jsonl:1: not valid UTF-8"),
    (b'{"src": "a"}\n', {"fields": {"source": "source_text"}}, "column 'source_text' is not in the data"),
    (b'{"source": "a", "id": 1}\n{"source": "b", "id": 1}\n', {"key": "id"}, "duplicate row key '1'"),
])
def test_bad_data_files(tmp_path: Path, content: bytes, cfg: dict, message: str) -> None:
    (tmp_path / "d.jsonl").write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("[", r"\[")):
        rows(tmp_path, path="d.jsonl", **cfg)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        rows(tmp_path, path="nope.jsonl")
    with pytest.raises(DataError, match="give 'path'"):
        rows(tmp_path)


def test_huggingface_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"src": ["a", "b", "c"], "ref": ["A", "B", "C"]})
    ds.save_to_disk(str(tmp_path / "hfds"))
    out = rows(tmp_path, path=str(tmp_path / "hfds"), fields={"source": "src"}, limit=2)
    assert [r["source"] for _, r in out] == ["a", "b"]


def test_per_system_text_files(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "A.txt").write_text("one\n2\n", encoding="utf-8")
    (tmp_path / "B.txt").write_text("uno\ndos\n", encoding="utf-8")
    out = rows(tmp_path, files={"source": "src.txt", "reference": "ref.txt"},
               systems={"A": "A.txt", "B": "B.txt"})
    assert [k for k, _ in out] == ["0:A", "0:B", "1:A", "1:B"]
    assert out[3][1] == {"source": "zwei", "reference": "two", "system": "B", "hypothesis": "dos", "item": "1"}
    (tmp_path / "B.txt").write_text("uno\n", encoding="utf-8")
    with pytest.raises(DataError, match="system B=1"):
        rows(tmp_path, files={"source": "src.txt"}, systems={"A": "A.txt", "B": "B.txt"})

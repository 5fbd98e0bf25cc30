"""A finished run resumed with nothing changed skips both passes over its data; any change to
the data file, a template, or --retry-errors with failed rows takes the normal path."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import pytest

from promptweave import run_pipeline
from promptweave.pipelines import engine as engine_mod
from tests.helpers import write_jsonl


def _config(tmp: Path, fail_first: int = 0) -> Path:
    write_jsonl(tmp / "d.jsonl", [{"source": f"Satz {i}.", "reference": f"Sentence {i}."} for i in range(30)])
    (tmp / "t.yaml").write_text("messages:\n  - {role: user, content: 'Translate: {{ source }}'}\n")
    cfg = tmp / "p.yaml"
    cfg.write_text(f"""
name: stamp
model: {{backend: scripted, max_retries: 0, options: {{default: '{{echo}}', fail_first: {fail_first}}}}}
data: {{path: d.jsonl, src_lang: de, tgt_lang: en}}
steps:
  - id: hyp
    generate: {{template: t.yaml}}
metrics: [bleu]
scoring: {{hypothesis: hyp}}
cache: 'off'
output: runs
""")
    return cfg


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each run read from its data."""
    counts: list[int] = []
    original = engine_mod.Engine.iter_data

    def counting(self, *a, **k):  # type: ignore[no-untyped-def]
        for item in original(self, *a, **k):
            counts[-1] += 1
            yield item

    monkeypatch.setattr(engine_mod.Engine, "iter_data", counting)
    return counts


def _run(cfg: Path, reads: list[int], **kw):  # type: ignore[no-untyped-def]
    reads.append(0)
    return run_pipeline(cfg, run_id="r", **kw)


def test_unchanged_finished_run_reads_only_its_first_row(tmp_path: Path, reads: list[int]) -> None:
    cfg = _config(tmp_path)
    first = _run(cfg, reads)
    assert reads[-1] >= 60  # the check pass and the run pass
    scores = (first.run_dir / "scores.json").read_bytes()
    again = _run(cfg, reads)
    assert reads[-1] == 1 and again.ran == 0 and again.skipped == 30 and again.ledger.calls == 0
    assert (again.run_dir / "scores.json").read_bytes() == scores
    assert json.loads((again.run_dir / "manifest.json").read_text())["last_run"]["rows_total"] == 30


def test_touched_data_or_template_takes_the_normal_path(tmp_path: Path, reads: list[int]) -> None:
    cfg = _config(tmp_path)
    _run(cfg, reads)
    data = tmp_path / "d.jsonl"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = _run(cfg, reads)
    assert reads[-1] == 31 and again.ran == 0  # checked again (first row + one pass), nothing to run
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    rows[3]["source"] = "Ein anderer Satz."
    write_jsonl(data, rows)
    changed = _run(cfg, reads)
    assert changed.ran == 1 and changed.changed == 1
    (tmp_path / "t.yaml").write_text("messages:\n  - {role: user, content: 'Please translate: {{ source }}'}\n")
    edited = _run(cfg, reads)
    assert reads[-1] >= 60 and edited.ran == 30


def test_retry_errors_with_failed_rows_reads_the_data(tmp_path: Path, reads: list[int]) -> None:
    cfg = _config(tmp_path, fail_first=2)
    first = _run(cfg, reads)
    assert first.errors == 2
    plain = _run(cfg, reads)
    assert reads[-1] == 1 and plain.ran == 0 and plain.errors == 2
    retried = _run(cfg, reads, retry_errors=True)
    assert reads[-1] == 61 and retried.ran == 2  # first row, the check pass, the run pass


def test_deleted_scores_are_computed_again(tmp_path: Path, reads: list[int]) -> None:
    cfg = _config(tmp_path)
    first = _run(cfg, reads)
    scores = json.loads((first.run_dir / "scores.json").read_text())
    (first.run_dir / "scores.json").unlink()
    again = _run(cfg, reads)
    assert json.loads((again.run_dir / "scores.json").read_text())["metrics"] == scores["metrics"]


def test_nothing_to_do_keeps_report_html_and_writes_a_missing_one(tmp_path: Path, reads: list[int]) -> None:
    cfg = _config(tmp_path)
    first = _run(cfg, reads)
    page = first.run_dir / "report.html"
    html = page.read_bytes()
    os.utime(page, (1_000_000, 1_000_000))
    again = _run(cfg, reads)
    assert again.ran == 0 and page.stat().st_mtime == 1_000_000  # not rendered again
    page.unlink()
    third = _run(cfg, reads)
    assert third.ran == 0 and page.exists()
    # the same page but for the finish time in its header
    strip = lambda b: re.sub(rb"finished [^<]*? \xc2\xb7", b"", b)  # noqa: E731
    assert strip(page.read_bytes()) == strip(html)

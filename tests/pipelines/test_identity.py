"""A run's identity is its content: change an input and exactly the rows it feeds run again;
change nothing and no request reaches the model. Requests are counted by the server (the real
local OpenAI-compatible one), on the other side of the wire."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptweave import run_pipeline
from promptweave.pipelines.identity import sha
from promptweave.pipelines.rundir import RunDirError
from promptweave.testing import serve, stats
from tests.helpers import read_jsonl, write_jsonl

ROWS = 6


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve() as base_url:
        yield base_url


class Project:
    """A pipeline whose data, template, examples and metrics the tests edit between runs."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.data = [{"id": f"r{i}", "source": f"Satz {i}.", "reference": f"Satz {i}."} for i in range(ROWS)]
        self.template = "messages:\n  - role: user\n    content: 'T1 {{ source }}'\n"
        self.examples = [{"source": "Hallo.", "reference": "Hello."}, {"source": "Ja.", "reference": "Yes."}]
        self.metrics = "[chrf]"
        self.extra = ""

    def write(self) -> Path:
        write_jsonl(self.tmp / "data.jsonl", self.data)
        write_jsonl(self.tmp / "dev.jsonl", self.examples)
        (self.tmp / "t.yaml").write_text(self.template, encoding="utf-8")
        cfg = self.tmp / "pipe.yaml"
        cfg.write_text(
            "name: ident\n"
            f"model: {{backend: openai, model: m, base_url: '{self.url}', temperature: 0}}\n"
            "data: {path: data.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
            "steps:\n"
            "  - id: hyp\n    generate: {template: t.yaml}\n"
            "  - id: icl\n    translate: {prompt: icl, examples: {path: dev.jsonl, k: 1}}\n"
            f"metrics: {self.metrics}\nscoring: {{hypothesis: hyp}}\noutput: {self.tmp / 'runs'}\n" + self.extra,
            encoding="utf-8")
        return cfg

    def run(self, **kw: Any) -> tuple[Any, int]:
        """(summary, requests that reached the server)."""
        before = stats(self.url)["requests"]
        summary = run_pipeline(self.write(), **kw)
        return summary, stats(self.url)["requests"] - before

    def rows(self, summary: Any) -> dict[str, dict[str, Any]]:
        return {r["key"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}

    def manifest(self, summary: Any) -> dict[str, Any]:
        return json.loads((summary.run_dir / "manifest.json").read_text())


def assert_manifest_matches_outputs(p: Project, summary: Any) -> None:
    """Every stored row carries the fingerprint of the inputs the manifest records, and the
    template hash in the manifest is the hash of the file on disk."""
    m = p.manifest(summary)
    ident = m["identity"]
    for key, rec in p.rows(summary).items():
        assert rec["fp"] == sha([ident["row_base"], key, rec["fields"]])[:16], key
    on_disk = hashlib.sha256((p.tmp / "t.yaml").read_bytes()).hexdigest()
    assert m["steps"]["hyp"]["template_sha256"] == on_disk == ident["inputs"]["hyp"]["template t"]
    assert len(p.rows(summary)) == m["last_run"]["rows_total"]


def test_each_input_reruns_exactly_the_rows_it_feeds(tmp_path: Path, url: str) -> None:
    p = Project(tmp_path, url)
    first, paid = p.run()
    assert first.ran == ROWS and paid == 2 * ROWS
    run_dir = first.run_dir

    # unchanged: zero requests reach the model
    again, paid = p.run()
    assert (again.ran, again.skipped, paid, again.run_dir) == (0, ROWS, 0, run_dir)

    # one data row edited: that row alone runs again, in the same run directory
    p.data[2]["source"] = "Satz zwei, neu."
    edited, paid = p.run()
    assert (edited.ran, edited.changed, paid, edited.run_dir) == (1, 1, 2, run_dir)
    assert "Satz zwei, neu." in p.rows(edited)["r2"]["outputs"]["hyp"]["value"]
    assert_manifest_matches_outputs(p, edited)

    # the template file edited: every row's hyp runs again, the icl step's requests are cache hits
    p.template = p.template.replace("T1", "T2")
    edited, paid = p.run()
    assert (edited.ran, paid, edited.run_dir) == (ROWS, ROWS, run_dir)
    assert all(r["outputs"]["hyp"]["value"].startswith("T2 ") for r in p.rows(edited).values())
    assert_manifest_matches_outputs(p, edited)

    # back to the old template: rows run again, but every request is answered by the cache
    p.template = p.template.replace("T2", "T1")
    back, paid = p.run()
    assert (back.ran, paid) == (ROWS, 0)
    assert all(r["outputs"]["hyp"]["value"].startswith("T1 ") for r in p.rows(back).values())
    assert back.ledger.cache_hits == 2 * ROWS

    # the examples file edited: the icl step's prompts change for every row
    old_inputs = p.manifest(back)["identity"]["inputs"]
    p.examples[0] = {"source": "Guten Tag.", "reference": "Good day."}
    edited, paid = p.run()
    assert (edited.ran, paid) == (ROWS, ROWS)
    new_inputs = p.manifest(edited)["identity"]["inputs"]
    assert new_inputs["hyp"] == old_inputs["hyp"] and new_inputs["icl"] != old_inputs["icl"]
    assert_manifest_matches_outputs(p, edited)

    # a metric option: no row runs, the scores and the manifest follow the new option
    p.metrics = "[{chrf: {word_order: 2}}]"
    rescored, paid = p.run()
    assert (rescored.ran, paid) == (0, 0)
    scores = json.loads((run_dir / "scores.json").read_text())
    assert "nw:2" in scores["metrics"]["chrf"]["signature"]
    assert p.manifest(rescored)["metric_signatures"]["chrf"] == scores["metrics"]["chrf"]["signature"]

    # a row removed from the data leaves results.jsonl, kept in superseded.jsonl
    removed = p.data.pop(0)
    fewer, paid = p.run()
    assert (fewer.ran, paid) == (0, 0)
    assert sorted(p.rows(fewer)) == [f"r{i}" for i in range(1, ROWS)]
    assert removed["id"] in {r["key"] for r in read_jsonl(run_dir / "superseded.jsonl")}
    assert_manifest_matches_outputs(p, fewer)


def test_the_default_run_id_follows_the_config_not_the_files(tmp_path: Path, url: str) -> None:
    p = Project(tmp_path, url)
    base, _ = p.run()
    p.extra = "concurrency: 3\ndescription: operational settings do not count\n"
    same, paid = p.run()
    assert same.run_dir == base.run_dir and paid == 0
    hotter, _ = p.run(overrides=["model.temperature=0.5"])
    assert hotter.run_dir != base.run_dir


def test_run_id_reuse_with_another_config_is_refused_unless_overwrite(tmp_path: Path, url: str) -> None:
    p = Project(tmp_path, url)
    p.run(run_id="mine")
    before = p.rows(p.run(run_id="mine")[0])
    with pytest.raises(RunDirError, match=r"different config \(model.temperature differ\).*--overwrite"):
        p.run(run_id="mine", overrides=["model.temperature=0.7"])
    assert p.rows(p.run(run_id="mine")[0]) == before  # the refused run touched nothing
    over, paid = p.run(run_id="mine", overrides=["model.temperature=0.7"], overwrite=True)
    assert over.ran == ROWS and paid == 2 * ROWS  # other sampling: new requests
    ident = json.loads((over.run_dir / "identity.json").read_text())
    assert ident["config"] == p.manifest(over)["identity"]["config"]
    assert "0.7" not in json.dumps(ident)  # leaves are stored as hashes, never values


def test_interpolated_secrets_never_reach_identity_json(tmp_path: Path, url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_SECRET_SUFFIX", "sk-very-secret-value")
    p = Project(tmp_path, url)
    p.extra = "description: ''\n"
    cfg = p.write()
    cfg.write_text(cfg.read_text().replace("model: m,", "model: 'm-${PW_SECRET_SUFFIX}',"))
    summary = run_pipeline(cfg)
    assert "sk-very-secret-value" not in (summary.run_dir / "identity.json").read_text()


def test_credentials_are_not_identity(tmp_path: Path, url: str) -> None:
    """Rotating an API key keeps the run (and no hash of a key is written)."""
    p = Project(tmp_path, url)
    first, _ = p.run(overrides=["model.options.api_key=sk-one"])
    again, paid = p.run(overrides=["model.options.api_key=sk-two"])
    assert again.run_dir == first.run_dir and (again.ran, paid) == (0, 0)
    assert "api_key" not in (first.run_dir / "identity.json").read_text()

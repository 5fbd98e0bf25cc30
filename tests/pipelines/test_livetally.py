"""The live tally (scores kept while rows finish in any order) equals a tally of the records in
data order: rows arriving out of order, rows kept from an earlier run, rows dropped from memory
when too many wait, with and without a process pool."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from promptweave import load_config, run_pipeline
from promptweave.evaluators.segstats import make_pool
from promptweave.pipelines import livetally, scoring
from promptweave.pipelines.livetally import LiveTally
from promptweave.pipelines.scoring import RunTally
from promptweave.pipelines.store import RunStore
from tests.pipelines.test_streaming_scores import multisystem_config


def _view(tally: RunTally) -> str:
    scores = tally.scores()
    scores["segments"] = list(scores["segments"].items_in_order())
    return json.dumps({"scores": scores, "systems": tally.system_table(tally.scores()), "numbers": tally.numbers(),
                       "stats": tally.stats_by_key(), "mt": sorted(map(str, tally.mt_cells.items())),
                       "examples": [tally.n_errors, tally.errors, tally.samples]}, sort_keys=True, default=str)


@pytest.mark.parametrize("pooled", [False, True])
def test_live_tally_in_any_order_equals_the_ordered_tally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          pooled: bool) -> None:
    monkeypatch.setattr(scoring, "CHUNK", 37)
    monkeypatch.setattr(livetally, "MAX_WAITING", 5)  # rows waiting beyond this are read back
    cfg = multisystem_config(tmp_path, 120)
    summary = run_pipeline(cfg, run_id="r")
    store = RunStore(summary.run_dir)
    store.open()
    try:
        records = store.ordered()
    finally:
        store.close()
    loaded = load_config(cfg)
    reference = RunTally(loaded, keep_stats=50)
    reference.add_all(records)

    by_key = {r["key"]: r for r in records}
    keys = [r["key"] for r in records]
    rng = random.Random(7)
    todo = bytearray(rng.random() < 0.8 for _ in keys)  # the rest were kept from an earlier run
    reads: list[str] = []

    def read(key: str) -> dict:
        reads.append(key)
        return by_key[key]

    arrival = [r for r, t in zip(records, todo) if t]
    # mostly in order, a few far behind (a slow row), as rows finish under concurrency
    arrival.sort(key=lambda r: r["index"] + rng.choice([0, 0, 0, 3, 9, 40]))
    pool = make_pool(2) if pooled else None
    try:
        live = LiveTally(RunTally(loaded, pool, keep_stats=50, live=1), keys, todo, read)
        for rec in arrival:
            live.add(rec)
        assert _view(live.finish()) == _view(reference)
    finally:
        if pool is not None:
            pool.shutdown()
    kept = {k for k, t in zip(keys, todo) if not t}
    assert kept <= set(reads)  # kept rows come from the store
    assert len(reads) > len(kept)  # and so do rows dropped from memory while they waited


@pytest.mark.parametrize("chunk", [90, 100])
def test_tokenized_period_warning_once_per_run_as_sacrebleu_once_per_corpus(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, chunk: int) -> None:
    # 270 hypotheses ending in " .": sacreBLEU warns once for the corpus; chunks of 90 warned
    # never, chunks of 100 twice
    from tests.helpers import scripted_pipeline

    monkeypatch.setattr(scoring, "CHUNK", chunk)
    cfg = scripted_pipeline(tmp_path, rows=270, reply="the translation .", extra="metrics: [bleu]\n")
    with caplog.at_level("WARNING", logger="sacrebleu"):
        run_pipeline(cfg, run_id="r")
    assert sum("100 lines that end in a tokenized period" in r.getMessage() for r in caplog.records) == 1

"""Fault tolerance over real HTTP: the fault-injecting server (``promptweave.testing``) in its own
process, the ``openai`` backend, the whole engine. The server counts every request per request
key (a hash of the body, equal across retries), so what the client paid for is checked from the
other side of the wire.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from promptweave import run_pipeline
from promptweave.testing import configure, request_log, serve, stats
from tests.helpers import cli, read_jsonl, write_jsonl

ROW = re.compile(r"Zeile (\d{4})")


def make_pipeline(tmp: Path, base_url: str, rows: int, *, model: str = "", extra: str = "") -> Path:
    write_jsonl(tmp / "data.jsonl", [
        {"id": f"r{i:04d}", "source": f"Zeile {i:04d}: der Zug fährt heute später ab.",
         "reference": f"Zeile {i:04d}: der Zug fährt heute später ab."} for i in range(rows)])
    (tmp / "echo.yaml").write_text("messages:\n  - role: user\n    content: '{{ source }}'\n", encoding="utf-8")
    cfg = tmp / "pipe.yaml"
    cfg.write_text(
        "name: faults\n"
        f"model: {{backend: openai, model: m, base_url: '{base_url}', temperature: 0{model}}}\n"
        "data: {path: data.jsonl, key: id, src_lang: de, tgt_lang: de}\n"
        "steps:\n  - id: hyp\n    generate: {template: echo.yaml, parser: strip}\n"
        f"output: {tmp / 'runs'}\n" + extra,
        encoding="utf-8",
    )
    return cfg


def results(cfg: Path) -> list[dict[str, Any]]:
    (run_dir,) = (cfg.parent / "runs" / "faults").iterdir()
    return read_jsonl(run_dir / "results.jsonl")


def arrivals_by_row(base_url: str) -> dict[int, list[list[Any]]]:
    """Server-side arrivals ``[arrival, sent, outcome, retry_after]`` per data row."""
    log = request_log(base_url)
    out: dict[int, list[list[Any]]] = {}
    for key, entries in log["log"].items():
        m = ROW.search(log["texts"][key])
        assert m, log["texts"][key]
        row = int(m.group(1))
        assert row not in out, f"row {row} reached the server under two request keys"
        out[row] = entries
    return out


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_flaky_server_loses_nothing_and_pays_once(tmp_path: Path, transport: str) -> None:
    """500 rows; 30% of requests fail (429 with Retry-After, 500, 503, resets, truncated JSON) and
    5% hang past the client timeout. Every row ends once, each request is tried at most
    max_retries + 1 times, never sooner than Retry-After, and the client's count of calls is the
    server's."""
    if transport == "aiohttp":
        pytest.importorskip("aiohttp", reason="the aiohttp transport needs aiohttp; httpx runs the same test")
    rows, max_retries, retry_after = 500, 6, 0.3
    faults = dict(seed=11, p429=0.12, retry_after=retry_after, p500=0.07, p503=0.03, reset=0.06, truncated=0.02,
                  hang=0.05, hang_seconds=30)
    with serve(**faults) as url:
        cfg = make_pipeline(tmp_path, url, rows, model=(
            f", max_retries: {max_retries}, timeout: 3.0, backoff_base: 0.05, backoff_max: 0.4, max_concurrency: 64,"
            f" options: {{transport: {transport}}}"), extra="concurrency: 64\n")
        summary = run_pipeline(cfg)
        server = stats(url)
        per_row = arrivals_by_row(url)

    records = results(cfg)
    keys = [r["key"] for r in records]
    assert len(keys) == rows and len(set(keys)) == rows  # all rows, none twice
    ok = [r for r in records if r["status"] == "ok"]
    for r in records:
        if r["status"] != "ok":  # a row may exhaust its retries: then it says why, and it is not a value
            assert f"after {max_retries + 1} attempts" in r["error"]["message"]
            assert r["outputs"]["hyp"]["value"] is None
    assert len(ok) >= rows - 3
    for r in ok:
        assert r["outputs"]["hyp"]["value"] == r["fields"]["source"]

    # the client paid for exactly what the server saw, row by row
    assert summary.ledger.calls == server["requests"] == sum(len(v) for v in per_row.values())
    assert set(per_row) == set(range(rows))
    for r in records:
        attempts = r["outputs"]["hyp"]["call"]["attempts"]
        seen = per_row[int(r["key"][1:])]
        assert len(seen) == attempts <= max_retries + 1
        assert (seen[-1][2] == "200") == (r["status"] == "ok")

    # never sooner than Retry-After: the next arrival after a 429 comes >= retry_after after it was sent
    gaps = [nxt[0] - prev[1] for seen in per_row.values() for prev, nxt in zip(seen, seen[1:]) if prev[2] == "429"]
    assert len(gaps) > 20
    assert min(gaps) >= retry_after - 0.002, min(gaps)

    # every fault the server injected shows in the ledger under its own label
    by = summary.ledger.by_status
    assert by.get("429", 0) == server["by_status"].get("429", 0) > 0
    assert by.get("500", 0) == server["by_status"].get("500", 0) > 0
    assert by.get("503", 0) == server["by_status"].get("503", 0) > 0
    assert by.get("timeout", 0) == server["by_status"].get("hang", 0) > 0
    assert by.get("connection", 0) == server["by_status"].get("reset", 0) > 0
    assert by.get("malformed", 0) == server["by_status"].get("truncated", 0) > 0
    assert summary.ledger.errors == rows - len(ok)


def test_exhausted_retries_are_errors_and_retry_errors_reruns_only_them(tmp_path: Path) -> None:
    with serve(fail_match=r"Zeile 000[37]\b") as url:
        cfg = make_pipeline(tmp_path, url, 10, model=", max_retries: 2, backoff_base: 0.01",
                            extra="metrics: [bleu]\nscoring: {hypothesis: hyp}\n")
        first = cli("run", str(cfg), "--no-progress", cwd=tmp_path)
        assert first.returncode == 1, first.stderr  # finished, with failed rows
        assert "2 errors" in first.stdout and "--retry-errors" in first.stdout
        assert stats(url)["requests"] == 8 + 2 * 3

        (run_dir,) = (tmp_path / "runs" / "faults").iterdir()
        records = {r["key"]: r for r in results(cfg)}
        failed = sorted(k for k, r in records.items() if r["status"] == "error")
        assert failed == ["r0003", "r0007"]
        for key in failed:
            err = records[key]["error"]
            assert err["step"] == "hyp" and "HTTP 500" in err["message"] and "after 3 attempts" in err["message"]
            assert records[key]["outputs"]["hyp"]["value"] is None
        scores = json.loads((run_dir / "scores.json").read_text())
        assert scores["rows_error"] == 2 and scores["rows_ok"] == 8
        assert sorted(scores["segments"]) == sorted(k for k in records if k not in failed)  # errors get no score
        assert scores["metrics"]["bleu"]["corpus"] == pytest.approx(100.0)  # the echo is perfect: no zeros mixed in
        report = (run_dir / "report.md").read_text()
        assert "2 rows failed" in report and "r0003" in report and "r0007" in report
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["usage"]["default"]["errors"] == 2 and manifest["usage"]["default"]["calls"] == 14

        # a plain re-run keeps the errors and asks for nothing
        configure(url, reset=True)
        again = cli("run", str(cfg), "--no-progress", cwd=tmp_path)
        assert again.returncode == 1 and stats(url)["requests"] == 0

        # the API has recovered: --retry-errors asks again for exactly the failed rows
        configure(url, reset=True, fail_match=None)
        retried = cli("run", str(cfg), "--no-progress", "--retry-errors", cwd=tmp_path)
        assert retried.returncode == 0, retried.stderr
        assert stats(url)["requests"] == 2
        texts = sorted(request_log(url)["texts"].values())
        assert [ROW.search(t).group(1) for t in texts] == ["0003", "0007"]  # type: ignore[union-attr]

    after = {r["key"]: r for r in results(cfg)}
    assert len(after) == 10 and all(r["status"] == "ok" for r in after.values())
    for key, rec in records.items():
        if key not in failed:
            assert after[key]["outputs"] == rec["outputs"]  # finished rows were not touched
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["rows_error"] == 0 and len(scores["segments"]) == 10


def test_non_retryable_status_is_not_retried(tmp_path: Path) -> None:
    with serve(fail_match="Zeile 0001", fail_status=400) as url:
        cfg = make_pipeline(tmp_path, url, 3, model=", max_retries: 5, backoff_base: 0.01")
        summary = run_pipeline(cfg)
        assert stats(url)["requests"] == 3  # the 400 was asked once
    assert summary.errors == 1
    (bad,) = [r for r in results(cfg) if r["status"] == "error"]
    assert bad["key"] == "r0001" and "HTTP 400" in bad["error"]["message"]

"""Hostile model servers and out-of-range sampling values, through the real CLI (issue 8, class 5).

- Every reply shape a broken server or proxy sends with status 200 (HTML, ``null``, a list, no
  ``choices[0].message``, content of the wrong type, bad ``usage``...) ends as a recorded,
  retried ``malformed reply`` row error quoting a short excerpt of the body: one row per shape,
  all in one ``promptweave run`` against the fault-injecting server's canned answers.
- Every ``Retry-After`` a server sends (``nan``, ``inf``, negative, an HTTP-date, garbage) is read
  as RFC 9110 says or ignored.
- A dead endpoint stops the run after a few connection failures with one line naming the URL,
  and the run resumes once the server is up.
- Every out-of-range sampling value is a one-line config error naming the field, exit 2.

Each case runs under a time limit; none may print a traceback.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from promptweave.testing import request_log, serve
from tests.helpers import REPO, read_jsonl, write_jsonl

LIMIT = 90  # seconds for any one CLI run here; a hang fails the test instead of the suite


def _chat(content: Any = "fine", *, usage: Any = None, finish: Any = "stop", **message: Any) -> str:
    msg = {"role": "assistant", "content": content, **message}
    body: dict[str, Any] = {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": msg, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body)


# name -> (raw body, content type, what the row error must say)
SHAPES: dict[str, tuple[str, str, str]] = {
    "html_page": ("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "not JSON"),
    "html_as_json": ("<!DOCTYPE html><html>oops</html>", "application/json", "not JSON"),
    "empty_body": ("", "application/json", "not JSON"),
    "plain_text": ("upstream connect error or disconnect/reset before headers", "text/plain", "not JSON"),
    "truncated_json": ('{"choices": [{"message": {"content": "hal', "application/json", "not JSON"),
    "json_null": ("null", "application/json", "a JSON null, not an object"),
    "json_list": ('[{"choices": []}]', "application/json", "a JSON array, not an object"),
    "empty_list": ("[]", "application/json", "a JSON array, not an object"),
    "json_string": ('"hello"', "application/json", "a JSON string, not an object"),
    "json_number": ("42", "application/json", "a JSON number, not an object"),
    "json_true": ("true", "application/json", "a JSON boolean, not an object"),
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, "application/json", "not JSON"),
    "empty_object": ("{}", "application/json", "no choices"),
    "choices_empty": ('{"choices": []}', "application/json", "no choices"),
    "choices_null": ('{"choices": null}', "application/json", "no choices"),
    "choices_object": ('{"choices": {"message": {"content": "x"}}}', "application/json", "no choices"),
    "choice_null": ('{"choices": [null]}', "application/json", "choices[0] has no message"),
    "choice_string": ('{"choices": ["fine"]}', "application/json", "choices[0] has no message"),
    "no_message": ('{"choices": [{"text": "legacy completion"}]}', "application/json", "choices[0] has no message"),
    "message_string": ('{"choices": [{"message": "fine"}]}', "application/json", "choices[0] has no message"),
    "message_empty": ('{"choices": [{"message": {}}]}', "application/json", "the message has no content"),
    "content_null": (_chat(None), "application/json", "the message has no content"),
    "content_number": (_chat(42), "application/json", "content is a JSON number, not text"),
    "content_object": (_chat({"text": "fine"}), "application/json", "content is a JSON object, not text"),
    "content_bool": (_chat(True), "application/json", "content is a JSON boolean, not text"),
    "content_numbers": (_chat([1, 2]), "application/json", "content parts that are not all text"),
    "content_image_part": (_chat([{"type": "image_url", "image_url": {"url": "x"}}]), "application/json",
                           "content parts that are not all text"),
    "finish_number": (_chat("fine", finish=7), "application/json", "finish_reason is not text"),
    "usage_negative": (_chat(usage={"prompt_tokens": -5, "completion_tokens": 2}), "application/json",
                       "usage.prompt_tokens is not a count"),
    "usage_string": (_chat(usage={"prompt_tokens": 3, "completion_tokens": "many"}), "application/json",
                     "usage.completion_tokens is not a count"),
    "usage_fraction": (_chat(usage={"prompt_tokens": 1.5, "completion_tokens": 2}), "application/json",
                       "usage.prompt_tokens is not a count"),
    "usage_nan": ('{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": NaN}}',
                  "application/json", "usage.prompt_tokens is not a count"),
    "usage_infinity": ('{"choices": [{"message": {"content": "x"}}], "usage": {"completion_tokens": Infinity}}',
                       "application/json", "usage.completion_tokens is not a count"),
    "usage_bool": (_chat(usage={"prompt_tokens": True, "completion_tokens": 1}), "application/json",
                   "usage.prompt_tokens is not a count"),
    "usage_list": (_chat(usage=[1, 2]), "application/json", "usage is not an object"),
    "error_in_200": ('{"error": {"message": "model overloaded", "code": 503}}', "application/json",
                     "an error object"),
    "huge_garbage": ("x" * 2_000_000, "text/plain", "not JSON"),
}

# name -> (canned answer, what the row error starts with, attempts: 2 when retried, 1 when not)
STATUSES: dict[str, tuple[dict[str, Any], str, int]] = {
    "status_204_empty": ({"status": 204, "body": ""}, "malformed reply: not JSON (HTTP 204", 2),
    "status_299_object": ({"status": 299, "body": "{}"}, "malformed reply: no choices (HTTP 299", 2),
    "status_404_html": ({"status": 404, "body": "<html>no such model</html>", "type": "text/html"},
                        "HTTP 404: Error code: 404 - <html>no such model</html>", 1),
    "status_418_null": ({"status": 418, "body": "null"}, "HTTP 418", 1),
    "status_502_huge_html": ({"status": 502, "body": "<html>" + "x" * 50_000 + "</html>", "type": "text/html"},
                             "HTTP 502: Error code: 502 - <html>xxx", 2),
    "status_503_plain": ({"status": 503, "body": "upstream overloaded", "type": "text/plain"},
                         "HTTP 503: Error code: 503 - upstream overloaded", 2),
    "gzip_garbage": ({"status": 200, "body": "not gzip at all", "headers": {"content-encoding": "gzip"}},
                     "connection error", 2),
    "redirect_loop": ({"status": 307, "body": "", "headers": {"location": "/v1/chat/completions"}},
                      "connection error: Exceeded maximum allowed redirects", 2),
}

# name -> (Retry-After header, wait the client must honour before its retry (None: only its own
# short backoff), or "over" when the wish is past retry_after_max and the row fails at once)
_FUTURE = email.utils.formatdate(time.time() + 3600, usegmt=True)
_PAST = email.utils.formatdate(time.time() - 3600, usegmt=True)
RETRY_AFTER: dict[str, tuple[str, float | str | None]] = {
    "ra_seconds": ("1", 1.0),
    "ra_fraction": ("0.6", 0.6),
    "ra_nan": ("nan", None),
    "ra_inf": ("inf", None),
    "ra_minus_inf": ("-inf", None),
    "ra_negative": ("-30", None),
    "ra_exponent": ("1e9", None),
    "ra_garbage": ("soon, maybe", None),
    "ra_empty": ("", None),
    "ra_hex": ("0x10", None),
    "ra_too_long_number": ("123456789012345678901234567890", None),
    "ra_date_past": (_PAST, None),
    "ra_date_future": (_FUTURE, "over"),
    "ra_big_seconds": ("86400", "over"),
    "ra_bad_date": ("Mon, 99 Foo 2024 25:61:61 GMT", None),
}


def _marker(name: str) -> str:
    return f"CASE<{name}>"


def _pipeline(tmp: Path, base_url: str, names: list[str], **model: Any) -> Path:
    write_jsonl(tmp / "data.jsonl", [{"id": n, "source": _marker(n), "reference": "x"} for n in names])
    (tmp / "echo.yaml").write_text("messages:\n  - role: user\n    content: '{{ source }}'\n", encoding="utf-8")
    settings = {"backend": "openai", "model": "m", "base_url": f"'{base_url}'", "max_retries": 1,
                "backoff_base": 0.01, "backoff_max": 0.05, "retry_after_max": 5, **model}
    cfg = tmp / "pipe.yaml"
    cfg.write_text(
        "name: transport\n"
        f"model: {{{', '.join(f'{k}: {v}' for k, v in settings.items())}}}\n"
        "data: {path: data.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
        "steps:\n  - id: hyp\n    generate: {template: echo.yaml, parser: strip}\n"
        "output: runs\n",
        encoding="utf-8",
    )
    return cfg


def _run(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "promptweave", "run", str(cfg), "--no-progress", *args],
                          cwd=cfg.parent, capture_output=True, text=True, timeout=LIMIT, env=full)


def _rows(cfg: Path) -> dict[str, dict[str, Any]]:
    (run_dir,) = (cfg.parent / "runs" / "transport").iterdir()
    return {r["key"]: r for r in read_jsonl(run_dir / "results.jsonl")}


def _no_traceback(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr[-3000:]


def _arrivals(base_url: str) -> dict[str, list[list[Any]]]:
    log = request_log(base_url)
    return {log["texts"][k].removeprefix("CASE<").removesuffix(">"): v for k, v in log["log"].items()}


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict, dict]:
    """One run: a row per bad reply shape, one per Retry-After variant (429), one good reply cut
    at max_tokens."""
    tmp = tmp_path_factory.mktemp("shapes")
    canned = [{"match": _marker(n) + "$", "body": body, "type": ctype}
              for n, (body, ctype, _) in SHAPES.items()]
    canned += [{"match": _marker(n) + "$", "status": 429, "headers": {"retry-after": header},
                "body": '{"error": {"message": "slow down"}}'} for n, (header, _) in RETRY_AFTER.items()]
    canned += [{"match": _marker(n) + "$", **answer} for n, (answer, _, _) in STATUSES.items()]
    canned.append({"match": _marker("finish_length") + "$", "body": _chat("Das ist", finish="length",
                                                                           usage={"prompt_tokens": 4,
                                                                                  "completion_tokens": 2})})
    names = [*SHAPES, *RETRY_AFTER, *STATUSES, "finish_length"]
    (tmp / "canned.json").write_text(json.dumps(canned), encoding="utf-8")
    with serve(canned=f"@{tmp / 'canned.json'}") as url:
        cfg = _pipeline(tmp, url, names)
        res = _run(cfg)
        arrivals = _arrivals(url)
    return res, _rows(cfg), arrivals


def test_shapes_run_ends_cleanly(shapes_run: tuple) -> None:
    res, rows, _ = shapes_run
    _no_traceback(res)
    assert res.returncode == 1, res.stderr  # rows failed; nothing crashed
    assert len(rows) == len(SHAPES) + len(RETRY_AFTER) + len(STATUSES) + 1
    assert res.stderr.count("\n") <= 2, res.stderr  # no line per failed row on stderr


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_malformed_reply_is_a_retried_row_error(name: str, shapes_run: tuple) -> None:
    _, rows, arrivals = shapes_run
    row = rows[name]
    assert row["status"] == "error"
    message = row["error"]["message"]
    assert message.startswith("malformed reply: " + SHAPES[name][2]), message
    assert "(after 2 attempts)" in message and len(arrivals[name]) == 2  # retryable: retried once
    assert len(message) < 400, f"excerpt not capped: {len(message)} chars"
    assert row["outputs"]["hyp"]["call"]["prompt_tokens"] == 0  # nothing from a bad usage in the ledger


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_odd_statuses_are_row_errors(name: str, shapes_run: tuple) -> None:
    _, rows, arrivals = shapes_run
    _, start, attempts = STATUSES[name]
    row = rows[name]
    message = row["error"]["message"]
    assert row["status"] == "error" and message.startswith(start), message
    assert len(message) < 400
    if name != "redirect_loop":  # its arrivals are the redirects too
        assert row["outputs"]["hyp"]["call"]["attempts"] == attempts == len(arrivals[name]), message


@pytest.mark.parametrize("name", sorted(RETRY_AFTER))
def test_retry_after_is_parsed_safely(name: str, shapes_run: tuple) -> None:
    _, rows, arrivals = shapes_run
    header, wait = RETRY_AFTER[name]
    message = rows[name]["error"]["message"]
    times = arrivals[name]
    assert message.startswith("HTTP 429"), message
    if wait == "over":  # a wish past retry_after_max fails the row at once, saying so
        assert len(times) == 1 and "over retry_after_max=5s" in message, message
        return
    assert len(times) == 2, message
    gap = times[1][0] - times[0][0]
    if wait is None:  # ignored: only the configured backoff (<= 0.05 s) plus process noise
        assert gap < 0.9, f"{header!r} was taken as a wait of {gap:.2f}s"
    else:
        assert gap >= wait, f"{header!r}: retried after {gap:.2f}s"


def test_finish_reason_length_is_recorded(shapes_run: tuple) -> None:
    _, rows, _ = shapes_run
    row = rows["finish_length"]
    assert row["status"] == "ok" and row["outputs"]["hyp"]["value"] == "Das ist"
    call = row["outputs"]["hyp"]["call"]
    assert call["finish_reason"] == "length" and call["completion_tokens"] == 2


def test_malformed_replies_pass_on_retry(tmp_path: Path) -> None:
    """Half the replies are a proxy's HTML page: every row still ends ok, each bad reply retried."""
    with serve(bad=0.5, seed=4) as url:
        cfg = _pipeline(tmp_path, url, [f"r{i}" for i in range(12)], max_retries=8)
        res = _run(cfg, "--json")
        server = request_log(url)
    _no_traceback(res)
    assert res.returncode == 0, res.stderr
    assert all(r["status"] == "ok" for r in _rows(cfg).values())
    outcomes = [e[2] for entries in server["log"].values() for e in entries]
    assert outcomes.count("bad") > 0
    usage = json.loads(res.stdout)["usage"]
    assert usage["by_status"]["malformed"] == outcomes.count("bad") and usage["retries"] == outcomes.count("bad")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("url", ["refused", "http://no-such-host.invalid/v1"])
def test_dead_endpoint_stops_the_run_early(tmp_path: Path, url: str) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/v1" if url == "refused" else url
    cfg = _pipeline(tmp_path, base, [f"r{i}" for i in range(40)], max_retries=10, backoff_base=0.2)
    started = time.monotonic()
    res = _run(cfg)
    _no_traceback(res)
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the model server at {base}"), res.stderr
    assert "run the same command again to resume" in lines[0]
    assert time.monotonic() - started < 30  # not 40 rows x 11 attempts of backoff
    assert _rows(cfg) == {}  # nothing recorded as an error that --retry-errors would have to clear


def test_server_resetting_every_connection_stops_the_run(tmp_path: Path) -> None:
    with serve(reset=1.0) as url:
        cfg = _pipeline(tmp_path, url, [f"r{i}" for i in range(30)], max_retries=10, backoff_base=0.2)
        res = _run(cfg)
    _no_traceback(res)
    assert res.returncode == 3 and res.stderr.count("\n") == 1, res.stderr
    assert "connection attempts in a row failed" in res.stderr and _rows(cfg) == {}


def test_dead_endpoint_run_resumes_when_the_server_is_up(tmp_path: Path) -> None:
    port = _closed_port()
    names = [f"r{i}" for i in range(10)]
    cfg = _pipeline(tmp_path, f"http://127.0.0.1:{port}/v1", names)
    first = _run(cfg)
    assert first.returncode == 3 and _rows(cfg) == {}, first.stderr
    with serve(port=port):
        second = _run(cfg, "--json")
    _no_traceback(second)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["ran"] == 10 and summary["errors"] == 0
    assert sorted(_rows(cfg)) == sorted(names)


def test_breaker_off_records_each_row(tmp_path: Path) -> None:
    """``circuit_breaker: 0`` keeps the old behaviour: every row tries and fails on its own."""
    cfg = _pipeline(tmp_path, f"http://127.0.0.1:{_closed_port()}/v1", ["a", "b", "c"],
                    circuit_breaker=0, max_retries=0)
    res = _run(cfg)
    _no_traceback(res)
    assert res.returncode == 1, res.stderr
    rows = _rows(cfg)
    assert sorted(rows) == ["a", "b", "c"]
    assert all(r["error"]["message"].startswith("cannot connect to http://127.0.0.1") for r in rows.values())


# field, YAML value, words the error must hold
SAMPLING: list[tuple[str, str, str]] = [
    ("temperature", ".nan", "finite number"),
    ("temperature", "-7", "greater than or equal to 0"),
    ("temperature", "2.5", "less than or equal to 2"),
    ("temperature", ".inf", "finite number"),
    ("temperature", "hot", "valid number"),
    ("top_p", "42", "less than or equal to 1"),
    ("top_p", "0", "greater than 0"),
    ("top_p", ".nan", "finite number"),
    ("max_tokens", "-5", "greater than or equal to 1"),
    ("max_tokens", "0", "greater than or equal to 1"),
    ("max_tokens", "1.5", "valid integer"),
    ("max_tokens", "true", "valid integer"),
    ("seed", "abc", "valid integer"),
    ("seed", "1.5", "valid integer"),
    ("seed", "true", "valid integer"),
    ("seed", "'7'", "valid integer"),
    ("seed", "99999999999999999999999", "less than"),
    ("stop", "5", "valid list"),
    ("stop", "[1, 2]", "valid string"),
    ("stop", "['']", "at least 1 character"),
    ("stop", "{a: b}", "valid list"),
    ("timeout", "0", "greater than 0"),
    ("timeout", "-3", "greater than 0"),
    ("timeout", ".nan", "finite number"),
    ("max_retries", "-1", "greater than or equal to 0"),
    ("max_retries", "1.5", "valid integer"),
    ("rpm", "-10", "greater than 0"),
    ("tpm", "-1", "greater than 0"),
    ("price", "{input: -1}", "greater than or equal to 0"),
    ("price", "{output: .nan}", "finite number"),
    ("max_concurrency", "0", "greater than or equal to 1"),
    ("max_concurrency", "-4", "greater than or equal to 1"),
    ("circuit_breaker", "-1", "greater than or equal to 0"),
    ("backoff_base", ".nan", "finite number"),
    ("retry_after_max", "-1", "greater than or equal to 0"),
]


@pytest.fixture(scope="module")
def sampling_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sampling")
    _pipeline(tmp, "http://127.0.0.1:9/v1", ["a"])
    return tmp


@pytest.mark.parametrize("field, value, words", SAMPLING, ids=[f"{f}={v}" for f, v, _ in SAMPLING])
def test_out_of_range_sampling_is_a_config_error(field: str, value: str, words: str, sampling_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``promptweave run --set model.FIELD=VALUE`` through the CLI's ``main()``: one line, exit 2,
    before any call (the endpoint named does not exist)."""
    from promptweave.cli import main

    monkeypatch.chdir(sampling_dir)
    monkeypatch.setenv("PROMPTWEAVE_SUPERVISE", "0")  # in this process, so that stderr is captured
    monkeypatch.setattr(sys, "argv", ["promptweave", "run", "pipe.yaml", "--no-progress",
                                      "--set", f"model.{field}={value}"])
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    assert time.monotonic() - started < LIMIT
    text = err.getvalue()
    assert "Traceback" not in text and exited.value.code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert f"'model.{field}" in lines[0] and words in lines[0], lines[0]
    assert not (sampling_dir / "runs").exists()


@pytest.mark.parametrize("field, value", [("temperature", ".nan"), ("max_tokens", "-5")])
def test_out_of_range_sampling_in_a_fresh_process(field: str, value: str, tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, "http://127.0.0.1:9/v1", ["a"], **{field: value})
    res = _run(cfg)
    _no_traceback(res)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"pipe.yaml:2: 'model.{field}'" in res.stderr, res.stderr

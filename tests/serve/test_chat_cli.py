"""``promptweave chat``: a terminal session with /end, /memory and /forget over the real store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .server import REPO, serve_config


def _chat(cfg: Path, lines: list[str], session: str = "me") -> str:
    r = subprocess.run([sys.executable, "-m", "promptweave", "chat", str(cfg), "--session", session],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=REPO, timeout=60,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def test_chat_keeps_memory_across_runs(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    out = _chat(cfg, ["Hi, my name is Ada.", "/end", "/memory", "/bogus"])
    assert "You said: Hi, my name is Ada." in out
    assert "session ended; memory v1" in out
    assert "The user's name is Ada." in out and "memory v1 (turns 1-2)" in out
    assert "unknown command" in out
    out = _chat(cfg, ["Do you remember me?"])  # a new process, the same store
    assert "I remember: The user's name is Ada." in out
    out = _chat(cfg, ["/forget", "/memory", "Do you remember me?"])
    assert "forgotten" in out and "memory: none yet" in out and "I remember" not in out


def test_bad_session_id_is_a_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "promptweave", "chat", str(serve_config(tmp_path)), "--session", "../x"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, env={"PYTHONPATH": str(REPO),
                                                                                   "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and r.stderr.startswith("error: --session:") and "Traceback" not in r.stderr


def test_text_is_never_markup_and_undecodable_input_is_one_line(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    # the scripted bot echoes the message: rich markup in a model's reply is printed as it is
    out = _chat(cfg, ["look [/x] and [bold]here", "/end", "/memory", "/[/]"])
    assert "You said: look [/x] and [bold]here" in out
    assert "memory v1" in out and "unknown command /[/]" in out
    # bytes the terminal cannot decode (not UTF-8): refused in one line, nothing stored
    r = subprocess.run([sys.executable, "-m", "promptweave", "chat", str(cfg), "--session", "bytes"],
                       input=b"caf\xe9\n/memory\n", capture_output=True, cwd=REPO, timeout=60,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0 and "Traceback" not in err, err
    assert "error: your message contains a lone surrogate" in out and "nothing was sent" in out
    assert "memory: none yet" in out

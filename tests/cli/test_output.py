"""Text from users' files and models reaches the terminal as it is: never read as rich markup
(``[/x]`` in a system name, a path or a file name was a MarkupError traceback after the work was
done; ``[bold]`` restyled the terminal)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import REPO, cli, write_jsonl

ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def test_run_prints_names_and_paths_with_brackets_as_they_are(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": "1", "source": "Hallo Welt", "reference": "Hello world", "sys": "[/x]"},
        {"id": "1", "source": "Hallo Welt", "reference": "Hello world", "sys": "[bold]b"}])
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"""
name: brackets
model: {{backend: scripted, options: {{default: "[/reply] {{echo}}"}}}}
data: {{path: {tmp_path / 'd.jsonl'}, key: sys, src_lang: de, tgt_lang: en}}
steps:
  - id: hyp
    translate: {{prompt: tsp}}
metrics: [bleu]
scoring: {{group_by: sys}}
output: "{tmp_path / 'runs[/y]'}"
""")
    res = cli("run", str(cfg), "--no-progress", env=ENV)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"{tmp_path / 'runs[/y]'}/brackets/" in res.stdout
    assert "rows per system: [/x] 1/1, [bold]b 1/1" in res.stdout


def test_eval_prints_a_bracketed_file_name_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "sys[bold]x.txt").write_text("the cat sat on the mat today .\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("the cat sat on the mat today .\n", encoding="utf-8")
    res = cli("eval", "--hyp", str(tmp_path / "sys[bold]x.txt"), "--ref", str(tmp_path / "ref.txt"),
              "--metrics", "bleu", env=ENV)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "sys[bold]x" in res.stdout and "100.00" in res.stdout


def test_compare_prints_bracketed_system_names_as_they_are(tmp_path: Path) -> None:
    rows = [{"id": f"s{i}", "source": f"Satz {i}", "reference": f"the cat sat on mat number {i} today",
             "translations": [{"system": "[/x]", "hypothesis": f"the cat sat on mat number {i} today"},
                              {"system": "[bold]b", "hypothesis": f"a dog sat on the mat {i}"}]} for i in range(30)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "da.yaml").write_text("messages:\n  - {role: user, content: 'Score 0-100: {{ hypothesis }}'}\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"""
name: brackets
model: {{backend: scripted, options: {{default: '55'}}}}
data: {{path: {tmp_path / 'd.jsonl'}, key: id, explode: translations, src_lang: de, tgt_lang: en}}
steps:
  - id: da
    generate: {{template: {tmp_path / 'da.yaml'}, parser: number}}
metrics: [bleu]
scoring: {{hypothesis: hypothesis, group_by: system}}
output: {tmp_path / 'runs'}
""")
    res = cli("run", str(cfg), "--no-progress", env=ENV)
    assert res.returncode == 0, res.stderr
    run_dir = next((tmp_path / "runs" / "brackets").iterdir())
    res = cli("compare", str(run_dir), env=ENV, cwd=tmp_path)  # it writes compare.html here
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "Baseline: [/x]" in res.stdout and "[bold]b" in res.stdout

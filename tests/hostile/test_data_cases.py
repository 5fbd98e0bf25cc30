"""Hostile data files, table-driven: values that Python's readers accept but that would mean
something else (duplicate keys, NaN/Infinity, lists where text is expected, empty sources,
duplicate CSV headers), files that are not files (FIFOs, devices, directories) and inputs that
would exhaust the stack. Each error names the data file's line and the field."""

from __future__ import annotations

import json

from tests.hostile.harness import BASE, TableCase, table_tests

STEP = "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"


def data_case(name: str, filename: str, content: str | bytes, expect: list[str], *, extra: str = "",
              data_opts: str = "", body: str = "", steps: str = STEP,
              commands: tuple[str, ...] = ("validate", "run")) -> TableCase:
    config = (BASE + f"data: {{path: {{d}}/{filename}, src_lang: de, tgt_lang: en{data_opts}}}\n" + steps + body)
    return TableCase(name, config, expect, "data:", {filename: content}, [], commands)


def jl(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


OK = '{"source": "Hallo.", "reference": "Hello."}'
CASES: list[TableCase] = []

# -- JSON values that are not what they seem -----------------------------------------------------
for i, (row, parts) in enumerate([
        ('{"source": "a", "source": "b"}', ["duplicate key 'source'"]),
        ('{"source": "a", "meta": {"x": 1, "x": 2}}', ["duplicate key 'x'"]),
        ('{"source": NaN}', ["NaN is not a JSON number"]),
        ('{"source": "a", "score": NaN}', ["NaN is not a JSON number"]),
        ('{"source": "a", "score": Infinity}', ["Infinity is not a JSON number"]),
        ('{"source": "a", "score": -Infinity}', ["-Infinity is not a JSON number"]),
        ('{"source": "a", "score": 1e999}', ["too large"]),
        ('{"source": "a", "list": [1, 2, NaN]}', ["NaN"]),
        ('{"source": "a", "n": ' + "9" * 5000 + "}", ["invalid JSON"]),
        ('[' * 100000 + ']' * 100000, ["nested deeper than"]),
        ('{"a":' * 100000 + '1' + '}' * 100000, ["nested deeper than"]),
        ('{"source": "a", "deep": ' + '[' * 70 + ']' * 70 + '}', ["nested deeper than 64"]),
        ('{"source": "a"', ["invalid JSON"]),
        ('"just a string"', ["must be a JSON object"]),
        ("null", ["must be a JSON object"])]):
    CASES.append(data_case(f"jsonl_{i}", "d.jsonl", jl(OK, row), ["d.jsonl:2:", *parts]))
for i, (doc, parts) in enumerate([
        ('[{"source": "a", "source": "b"}]', ["duplicate key 'source'"]),
        ('[{"source": "a", "score": NaN}]', ["NaN"]),
        ('[{"source": "a", "score": 1e400}]', ["too large"]),
        ('[' * 50000 + ']' * 50000, ["nested deeper than"]),
        ('{"rows": 5}', ["expected a JSON list of objects"]),
        ('[1, 2]', ["expected a JSON list of objects"])]):
    CASES.append(data_case(f"json_{i}", "d.json", doc, ["d.json", *parts]))

# -- text fields that hold something else ---------------------------------------------------------
for i, (row, field, what) in enumerate([
        ('{"source": ["Hallo"], "reference": "x"}', "source", "a list"),
        ('{"source": 42, "reference": "x"}', "source", "a number"),
        ('{"source": 4.5, "reference": "x"}', "source", "a number"),
        ('{"source": {"de": "Hallo"}, "reference": "x"}', "source", "a mapping"),
        ('{"source": true, "reference": "x"}', "source", "true/false"),
        ('{"source": "Hallo", "reference": ["x"]}', "reference", "a list"),
        ('{"source": "Hallo", "reference": 7}', "reference", "a number"),
        ('{"source": "Hallo", "reference": {"a": 1}}', "reference", "a mapping"),
        ('{"source": "Hallo", "reference": false}', "reference", "true/false")]):
    CASES.append(data_case(f"nontext_{i}", "d.jsonl", jl(OK, row), ["d.jsonl:2:", f"field '{field}' must be text",
                                                                    what]))
CASES.append(data_case("nontext_mapped", "d.jsonl", jl('{"src": "a"}', '{"src": [1]}'),
                       ["d.jsonl:2:", "field 'source' must be text"], data_opts=", fields: {source: src}"))
CASES.append(data_case("nontext_hyp_field", "d.jsonl", jl('{"source": "a", "reference": "b", "mt": ["x"]}'),
                       ["d.jsonl:1:", "field 'mt' must be text"], body="metrics: [bleu]\nscoring: {hypothesis: mt}\n",
                       steps="steps:\n  - id: gen\n    generate: {template: baseline}\n"))
CASES.append(data_case("nontext_judge_translation", "d.jsonl", jl('{"source": "a", "mt": 3}'),
                       ["d.jsonl:1:", "field 'mt' must be text"],
                       steps="steps:\n  - id: judge\n    da: {translation: mt}\n"))

# -- sources that would be sent empty -------------------------------------------------------------
for i, value in enumerate(['""', '"   "', '"\\t\\n"', '"\\u3000"']):
    CASES.append(data_case(f"empty_source_{i}", "d.jsonl", jl(OK, OK, f'{{"source": {value}}}'),
                           ["d.jsonl:3:", "field 'source' is empty", "remove the row or fill it in"]))
for i, value in enumerate(["null", '""', '"  "']):
    CASES.append(data_case(f"reference_lacking_{i}", "d.jsonl", jl(OK, f'{{"source": "Welt.", "reference": {value}}}'),
                           ["row '1' has no 'reference'", "bleu needs a reference"], body="metrics: [bleu]\n"))
CASES.append(data_case("reference_absent_in_row", "d.jsonl", jl(OK, '{"source": "Welt."}'), ["row '1' has no 'reference'"],
                       body="metrics: [chrf, ter]\n"))
CASES.append(data_case("null_source", "d.jsonl", jl(OK, '{"source": null}'), ["d.jsonl:2:", "missing or null"]))
CASES.append(data_case("absent_source_row3", "d.jsonl", jl(OK, OK, '{"text": "x"}'), ["d.jsonl:3:", "missing"]))
CASES.append(TableCase("empty_source_parallel", BASE + "data: {files: {source: {d}/src.txt, reference: {d}/ref.txt}, "
                       "src_lang: de, tgt_lang: en}\n" + STEP, ["src.txt:2:", "is empty"], "data:",
                       {"src.txt": "Hallo.\n\nWelt.\n", "ref.txt": "Hello.\nX\nWorld.\n"}))
CASES.append(data_case("empty_source_csv", "d.csv", "source,reference\nHallo,Hello\n\"\",x\n",
                       ["d.csv:3:", "is empty"]))
CASES.append(data_case("empty_source_tsv", "d.tsv", "source\treference\nHallo\tHello\n \tx\n", ["d.tsv:3:", "is empty"]))

# -- CSV/TSV structure ------------------------------------------------------------------------------
for i, (name, content, parts) in enumerate([
        ("d.csv", "source,source,reference\na,b,c\n", ["d.csv:1:", "duplicate column 'source'"]),
        ("d.tsv", "source\treference\treference\na\tb\tc\n", ["d.tsv:1:", "duplicate column 'reference'"]),
        ("d.csv", "source,,reference\na,b,c\n", ["d.csv:1:", "column 2", "no name"]),
        ("d.csv", 'source,reference\n"unterminated,x\n', ["d.csv:2:", "malformed CSV"]),
        ("d.csv", 'source,reference\na,b,c\n', ["d.csv:2:", "3 columns where the header has 2"]),
        ("d.csv", 'source,reference\n"line one\nline two",x\na\n', ["d.csv:4:", "1 columns"]),
        ("d.tsv", "source\treference\na\n", ["d.tsv:2:", "1 columns"]),
        ("d.csv", b"source,reference\nHall\xf6,x\n", ["d.csv:2:", "not valid UTF-8"])]):
    CASES.append(data_case(f"delimited_{i}", name, content, parts))

# -- numbers: human scores must be finite ------------------------------------------------------------
SCORED = "metrics: [bleu]\nscoring: {human: mqm}\n"
for i, (name, content, parts) in enumerate([
        ("d.csv", "source,reference,mqm\nHallo,Hello,inf\n", ["d.csv:2:", "field 'mqm'", "not a finite number"]),
        ("d.csv", "source,reference,mqm\nHallo,Hello,-inf\n", ["d.csv:2:", "not a finite number"]),
        ("d.tsv", "source\treference\tmqm\nHallo\tHello\tnan\n", ["d.tsv:2:", "not a finite number"]),
        ("d.tsv", "source\treference\tmqm\nHallo\tHello\tbad\n", ["d.tsv:2:", "must be a number"]),
        ("d.jsonl", jl('{"source": "a", "reference": "b", "mqm": "x"}'), ["d.jsonl:1:", "must be a number"]),
        ("d.jsonl", jl('{"source": "a", "reference": "b", "mqm": true}'), ["d.jsonl:1:", "must be a number"]),
        ("d.jsonl", jl('{"source": "a", "reference": "b", "mqm": [1]}'), ["d.jsonl:1:", "must be a number"]),
        ("d.jsonl", jl('{"source": "a", "reference": "b", "mqm": "Infinity"}'), ["d.jsonl:1:", "not a finite"])]):
    CASES.append(data_case(f"human_{i}", name, content, parts, body=SCORED))

# -- per-row languages, keys, explode -----------------------------------------------------------------
for i, (row, parts) in enumerate([
        ('{"source": "a", "tgt_lang": "Chinese"}', ["field 'tgt_lang'", "did you mean 'zh'"]),
        ('{"source": "a", "src_lang": "xx"}', ["field 'src_lang'", "not a BCP-47"]),
        ('{"source": "a", "tgt_lang": 5}', ["field 'tgt_lang' must be a language code"])]):
    CASES.append(data_case(f"row_lang_{i}", "d.jsonl", jl(OK, row), ["d.jsonl:2:", *parts]))
CASES.append(TableCase("row_lang_partly", BASE + "data: {path: {d}/d.jsonl, key: id, src_lang: de}\n" + STEP,
                       ["'data'", "row 'b' has no tgt_lang", "set data.tgt_lang"], "data:",
                       {"d.jsonl": jl('{"id": "a", "source": "x", "tgt_lang": "en"}', '{"id": "b", "source": "y"}')}))
for i, (row, parts) in enumerate([
        ('{"id": ["a"], "source": "a"}', ["field 'id' (data.key) must be text or an integer"]),
        ('{"id": {"x": 1}, "source": "a"}', ["data.key"]),
        ('{"id": null, "source": "a"}', ["data.key"]),
        ('{"source": "a"}', ["data.key: field 'id' is not in the row"])]):
    CASES.append(data_case(f"key_{i}", "d.jsonl", jl('{"id": "k", "source": "x"}', row), ["d.jsonl:2:", *parts],
                           data_opts=", key: id"))
CASES.append(data_case("explode_system_mapping", "d.jsonl",
                       jl('{"source": "a", "translations": [{"system": {"n": 1}, "hypothesis": "x"}]}'),
                       ["d.jsonl:1:", "system' must be text"], data_opts=", explode: translations"))
CASES.append(data_case("explode_duplicate_system", "d.jsonl",
                       jl('{"id": "s", "source": "a", "translations": [{"system": "A"}, {"system": "A"}]}'),
                       ["d.jsonl:1:", "duplicate row key 's:A'"], data_opts=", key: id, explode: translations"))

# -- paths that are not regular files -----------------------------------------------------------------
for i, (path, parts) in enumerate([
        ("generated/fifo.jsonl", ["fifo.jsonl is a FIFO", "not a regular file"]),
        ("/dev/zero", ["/dev/zero is a device"]), ("/dev/null", ["is a device"]),
        ("generated/a_directory", ["a_directory"]),
        ("generated/dangling.jsonl", ["does not exist", "symbolic link"])]):
    CASES.append(TableCase(f"path_{i}", BASE + f"data: {{path: {path}, src_lang: de, tgt_lang: en, format: jsonl}}\n"
                           + STEP, ["'data.path'", *parts], "data:"))
CASES.append(TableCase("path_parallel_fifo", BASE + "data: {files: {source: generated/fifo.jsonl, reference: "
                       "data/ref.txt}, src_lang: de, tgt_lang: en}\n" + STEP, ["fifo.jsonl is a FIFO"], "data:"))
CASES.append(TableCase("path_examples_fifo", BASE + "data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                       "steps:\n  - id: hyp\n    translate: {prompt: icl, examples: {path: generated/fifo.jsonl, k: 1}}\n",
                       ["'steps[0].translate'", "FIFO"], "translate:"))
CASES.append(TableCase("path_template_fifo", BASE + "data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                       "steps:\n  - id: hyp\n    generate: {template: generated/fifo.jsonl}\n",
                       ["'steps[0].generate'", "FIFO"], "generate:"))
CASES.append(TableCase("path_template_device", BASE + "data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                       "steps:\n  - id: hyp\n    generate: {template: /dev/zero}\n",
                       ["'steps[0].generate'", "device"], "generate:"))

# -- examples files (k-shot) hold the same kind of values ---------------------------------------------
for i, (row, parts) in enumerate([('{"source": "a", "reference": ["b"]}', ["field 'target' must be text"]),
                                   ('{"source": "", "reference": "b"}', ["field 'source' is empty"]),
                                   ('{"source": "a", "reference": NaN}', ["NaN"])]):
    CASES.append(TableCase(f"examples_{i}", BASE + "data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
                           "steps:\n  - id: hyp\n    translate: {prompt: icl, examples: {path: {d}/dev.jsonl, k: 1}}\n",
                           ["'steps[0].translate'", "dev.jsonl:1:", *parts], "translate:",
                           {"dev.jsonl": jl(row)}))

table_results, test_validate, test_run = table_tests(CASES)


def test_enough_cases() -> None:
    assert len(CASES) >= 75, len(CASES)


def test_strict_json_round_trip() -> None:
    """What the strict reader accepts is standard JSON that writes back unchanged."""
    from promptweave.data.strictjson import is_finite_json, loads

    for text in ['{"a": 1.5, "b": [null, true, "x"], "c": {"d": -0.0}}', '{"e": 1e308}', '{"u": "\\u00e9"}']:
        value = loads(text)
        assert is_finite_json(value)
        assert loads(json.dumps(value, allow_nan=False)) == value

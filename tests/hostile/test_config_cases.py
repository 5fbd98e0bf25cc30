"""Hostile pipeline files, table-driven: meanings that would be silently wrong (step ids hiding
fields, languages, scoring fields naming nothing), options that would fail only after every call
was paid for (metrics, the scripted backend) and other malformed settings (YAML merge keys,
``--set`` bombs). Each case runs as ``validate`` (in-process) and ``run`` (forked)."""

from __future__ import annotations

import json

from tests.hostile.harness import BASE, TableCase, table_tests

ROWS = [{"id": f"r{i}", "source": f"Hallo Welt {i}.", "reference": f"Hello world {i}.", "system": "A",
         "doc": "d1", "mqm": -1.0} for i in range(3)]
DATA = "".join(json.dumps(r) + "\n" for r in ROWS)
DATA_LINE = "data: {path: {d}/d.jsonl, key: id, src_lang: de, tgt_lang: en}\n"
STEP = "steps:\n  - id: hyp\n    translate: {prompt: tsp}\n"


def case(name: str, body: str, expect: list[str], at: str | None = None, *, data_line: str = DATA_LINE,
         steps: str = STEP, files: dict[str, str | bytes] | None = None, args: list[str] | None = None,
         commands: tuple[str, ...] = ("validate", "run")) -> TableCase:
    return TableCase(name, BASE + data_line + steps + body, expect, at, {"d.jsonl": DATA, **(files or {})},
                     args or [], commands)


CASES: list[TableCase] = []

# -- class 2: a step id that would hide a prompt variable, a data field or a Jinja name --------------
for sid in ["source", "reference", "src_lang", "tgt_lang", "src_lang_name", "tgt_lang_name", "examples",
            "domain", "range", "lipsum", "loop", "namespace", "none", "True", "if", "for", "class", "lambda"]:
    CASES.append(case(f"id_reserved_{sid.lower()}_{sid[0].isupper()}", "", [f"'{sid}'", "reserved name"],
                      "- id:", steps=f"steps:\n  - id: {json.dumps(sid)}\n    translate: {{prompt: tsp}}\n"))
for sid, why in [("_private", "not starting with _"), ("héllo", "ASCII"), ("two words", "a name like"),
                 ("1st", "a name like")]:
    CASES.append(case(f"id_malformed_{len(CASES)}", "", ["'steps[0].id'", why], "- id:",
                      steps=f"steps:\n  - id: {json.dumps(sid)}\n    translate: {{prompt: tsp}}\n"))
for sid in ["doc", "mqm", "system", "id"]:
    CASES.append(case(f"id_is_data_field_{sid}", "", [f"step id '{sid}'", "field of the data", "rename"],
                      f"id: {sid}", steps=f"steps:\n  - id: {sid}\n    translate: {{prompt: tsp}}\n"))
CASES.append(case("id_is_mapped_field", "", ["step id 'text'", "field of the data"], "id: text",
                  data_line="data: {path: {d}/d.jsonl, key: id, src_lang: de, tgt_lang: en, "
                            "fields: {text: source}}\n",
                  steps="steps:\n  - id: text\n    translate: {prompt: tsp}\n"))
CASES.append(case("id_is_exploded_field", "", ["step id 'hypothesis'", "field of the data"], "id: hypothesis",
                  data_line="data: {path: {d}/x.jsonl, key: id, src_lang: de, tgt_lang: en, explode: translations}\n",
                  steps="steps:\n  - id: hypothesis\n    translate: {prompt: tsp}\n",
                  files={"x.jsonl": json.dumps({"id": "s1", "source": "Hallo.", "translations": [
                      {"system": "A", "hypothesis": "Hello."}]}) + "\n"}))

# -- class 2: languages from the BCP-47 tables -----------------------------------------------------
for i, (value, parts) in enumerate([
        ("Chinese", ["did you mean 'zh'"]), ("chinese", ["did you mean 'zh'"]), ("German", ["did you mean 'de'"]),
        ("Filipino", ["did you mean 'fil'"]), ("xx", ["not a BCP-47"]), ("zz-ZZ", ["not a BCP-47"]),
        ("'123'", ["not a BCP-47"]), ("123", ["valid string"]), ("'en us'", ["not a BCP-47"]), ("'-'", ["not a BCP-47"]),
        ("''", ["BCP-47"]), ("5", ["valid string"]), ("[en]", ["valid string"]),
        ("{a: b}", ["valid string"]), ("Klingonish", ["not a BCP-47"])]):
    CASES.append(case(f"lang_tgt_{i}", "", ["'data.tgt_lang'", *parts], "data:",
                      data_line=f"data: {{path: {{d}}/d.jsonl, key: id, src_lang: de, tgt_lang: {value}}}\n"))
for i, value in enumerate(["English", "qq", "de-XX-xxxxxxxxxx"]):
    CASES.append(case(f"lang_src_{i}", "", ["'data.src_lang'", "BCP-47"], "data:",
                      data_line=f"data: {{path: {{d}}/d.jsonl, key: id, src_lang: {value}, tgt_lang: en}}\n"))
CASES.append(case("lang_via_set", "", ["'data.tgt_lang'", "did you mean 'ja'"], None, args=["--set",
                                                                                              "data.tgt_lang=Japanese"]))

# -- class 2: a prompt that needs a language the pipeline does not set ----------------------------------
for prompt in ["tsp", "baseline", "cot-zero"]:
    for missing in ["tgt_lang", "both"]:  # these prompts name only the target language
        kept = {"tgt_lang": "src_lang: de", "both": ""}[missing]
        CASES.append(case(f"lang_missing_{missing}_{prompt}", "", ["'steps[0].translate'", "needs variable",
                                                                     "set data.src_lang and data.tgt_lang"],
                          "translate:", data_line=f"data: {{path: {{d}}/d.jsonl, key: id{', ' + kept if kept else ''}}}\n",
                          steps=f"steps:\n  - id: hyp\n    translate: {{prompt: {prompt}}}\n"))
for kind in ["mqm: {method: gemba_mqm, translation: reference}", "da: {translation: reference}",
             "mqm: {method: eaprompt, translation: reference}"]:
    CASES.append(case(f"lang_missing_judge_{kind.split(':')[0]}_{len(CASES)}", "", ["lacks", "tgt_lang_name",
                                                                                   "set data.src_lang/tgt_lang"],
                      kind.split(":")[0] + ":", data_line="data: {path: {d}/d.jsonl, key: id}\n",
                      steps=f"steps:\n  - id: judge\n    {kind}\n"))

# -- class 2: scoring fields that name nothing -----------------------------------------------------
for field, value, extra in [("hypothesis", "hpy", ""), ("group_by", "sytem", ""), ("human", "mqm_scor", ""),
                            ("reference", "ref", ""), ("group_by", "nothing_here", ""),
                            ("hypothesis", "translation", "")]:
    CASES.append(case(f"scoring_{field}_{value}", f"metrics: [bleu]\nscoring: {{{field}: {value}}}\n",
                      [f"scoring.{field} '{value}'", "names no data field or step"], "scoring:"))
for kind in ["generate: {template: baseline, parser: number}", "generate: {template: baseline, parser: json}",
             "da: {translation: hyp}", "mqm: {method: gemba_mqm, translation: hyp}"]:
    CASES.append(case(f"scoring_hyp_not_text_{len(CASES)}", "metrics: [bleu]\nscoring: {hypothesis: score}\n",
                      ["scoring.hypothesis 'score'", "not text"], "scoring:",
                      steps=STEP + f"  - id: score\n    {kind}\n"))
CASES.append(case("scoring_no_hypothesis", "metrics: [bleu]\n", ["metrics need a hypothesis"], "metrics:",
                  steps="steps:\n  - id: gen\n    generate: {template: baseline}\n"))
CASES.append(case("scoring_no_reference_field", "metrics: [chrf]\n", ["scoring.reference 'reference'",
                                                                       "names no data field"], "metrics:",
                  files={"d.jsonl": '{"id": "a", "source": "Hallo."}\n'}))

# -- class 3: metric options, checked before any call ---------------------------------------------
for i, (spec, parts) in enumerate([
        ("{chrf: {char_order: -1}}", ["char_order", "greater than or equal to 0"]),
        ("{chrf: {char_order: x}}", ["char_order", "valid integer"]),
        ("{chrf: {char_order: 2.5}}", ["char_order", "valid integer"]),
        ("{chrf: {char_order: 99}}", ["char_order", "less than or equal"]),
        ("{chrf: {word_order: -2}}", ["word_order"]),
        ("{chrf: {char_order: 0, word_order: 0}}", ["both 0"]),
        ("{chrf: {beta: -1}}", ["beta"]),
        ("{chrf: {lowercase: 'yes'}}", ["lowercase", "valid boolean"]),
        ("{chrf: {chars: 6}}", ["unknown option 'chars'"]),
        ("{bleu: {tokenize: nope}}", ["unknown tokenizer 'nope'"]),
        ("{bleu: {tokenize: 13A}}", ["unknown tokenizer '13A'"]),
        ("{bleu: {tokenize: 5}}", ["tokenize", "valid string"]),
        ("{bleu: {tokenze: intl}}", ["did you mean 'tokenize'"]),
        ("{bleu: {max_ngram_order: 0}}", ["max_ngram_order"]),
        ("{bleu: {smooth_method: wild}}", ["smooth_method 'wild'"]),
        ("{bleu: {smooth_value: -1}}", ["smooth_value"]),
        ("{bleu: {lowercase: 1}}", ["lowercase"]),
        ("{ter: {normalized: 3}}", ["normalized"]),
        ("{ter: {asian: true}}", ["unknown option 'asian'"]),
        ("{bleu: [tokenize]}", ["a mapping"]),
        ("{bleu: {}, chrf: {}}", ["a metric entry is a name"]),
        ("blue", ["did you mean 'bleu'"]),
        ("{comet: {batch_size: lots}}", ["comet"]),
        ("{comet: {modle: x}}", ["unknown option"])]):
    CASES.append(case(f"metric_{i}", f"metrics: [{spec}]\n", ["metrics[0]", *parts], "metrics:"))
CASES.append(case("metric_second_bad", "metrics:\n  - bleu\n  - chrf: {char_order: -1}\n",
                  ["metrics[1]", "char_order"], "- chrf"))
CASES.append(case("metric_via_set", "metrics: [bleu]\n", ["metrics[0]", "unknown tokenizer"], None,
                  args=["--set", "metrics.0={bleu: {tokenize: zzz}}"]))

# -- class 7: scripted-backend options --------------------------------------------------------------
for i, (opts, parts) in enumerate([
        ("{fail_firts: 1}", ["did you mean 'fail_first'"]), ("{rules: yes}", ["list of"]),
        ("{rules: [{match: a}]}", ["rules[0]"]), ("{rules: [{match: '(', reply: x}]}", ["not a valid regex"]),
        ("{rules: [{match: a, reply: '\\2'}]}", ["group '2'"]), ("{rules: [a]}", ["rules[0]"]),
        ("{rules: [{match: 5, reply: x}]}", ["both text"]), ("{default: 5}", ["'default'"]),
        ("{delay: -1}", ["'delay'"]), ("{delay: .nan}", ["'delay'"]), ("{delay: soon}", ["'delay'"]),
        ("{delay: 1e9}", ["'delay'"]), ("{fail_first: -1}", ["'fail_first'"]), ("{fail_first: '2'}", ["'fail_first'"]),
        ("{fail_first: true}", ["'fail_first'"]), ("{rules: [{match: '(?P<a>x)', reply: '\\g<b>'}]}", ["group 'b'"])]):
    CASES.append(TableCase(f"scripted_{i}", BASE.replace("max_retries: 0}", f"max_retries: 0, options: {opts}}}")
                           + DATA_LINE + STEP, ["'model.options'", "scripted", *parts], "model:",
                           {"d.jsonl": DATA}))
CASES.append(TableCase("scripted_named_model", BASE + "models:\n  judge: {backend: scripted, options: {delay: -5}}\n"
                       + DATA_LINE + STEP, ["'models.judge.options'", "'delay'"], "judge:", {"d.jsonl": DATA}))

# -- class 7: YAML merge keys, --set values, extension keys ------------------------------------------
CASES.append(case("merge_not_mapping", "x-base: &b [1, 2]\nmodels:\n  m:\n    <<: *b\n", ["merge key '<<'"], "<<:"))
CASES.append(case("merge_scalar", "models:\n  m:\n    <<: 5\n", ["merge key '<<'", "<<: *defaults"], "<<:"))
CASES.append(case("merge_unknown_key_after_merge", "x-base: &b {backend: scripted, temprature: 0}\n"
                  "models:\n  m:\n    <<: *b\n", ["'models.m.temprature'", "did you mean 'temperature'"], None))
CASES.append(case("top_key_hint", "base: &b {backend: scripted}\n", ["'base'", "unknown key", "x-"], "base:"))
BOMB = ("[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], "
        "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
        "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f]]")
for i, (arg, parts) in enumerate([
        (f"description={BOMB}", ["--set description", "YAML bomb"]),
        (f"model.options.rules={BOMB}", ["--set model.options.rules", "YAML bomb"]),
        ("model.options={a: 1, a: 2}", ["duplicate key 'a'"]),
        ("=x", ["KEY.PATH=VALUE"]), (".a=1", ["KEY.PATH=VALUE"]), ("a..b=1", ["KEY.PATH=VALUE"]),
        ("model=!!python/object:os.system {}", ["YAML tag", "not allowed"]),
        ("steps.7.id=x", ["index 7 is out of range"]), ("name.x=1", ["is not a mapping"]),
        ("concurrency=" + "[" * 5000, ["'concurrency'"]),
        ("concurrency=" + "[" * 3000 + "]" * 3000, ["'concurrency'"])]):
    CASES.append(case(f"set_{i}", "", parts, None, args=["--set", arg]))

# -- class 7: other settings ----------------------------------------------------------------------
CASES.append(case("null_values_not_list", "", ["'data.null_values'", "valid list"], "data:",
                  data_line="data: {path: {d}/d.jsonl, key: id, src_lang: de, tgt_lang: en, null_values: None}\n"))
CASES.append(case("record_env_not_list", "record_env: HOME\n", ["'record_env'", "valid list"], "record_env:"))
CASES.append(case("limit_zero", "", ["'data.limit'", "greater than or equal to 1"], None, args=["--limit", "0"],
                  commands=("run",)))

table_results, test_validate, test_run = table_tests(CASES)


def test_enough_cases() -> None:
    assert len(CASES) >= 120, len(CASES)

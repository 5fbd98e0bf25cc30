"""Templates that would run for minutes or eat gigabytes: every one must stop with a one-line error
that names the limit it hit, within the case's time limit, through the real CLI (``validate``
renders the prompts for row 1, ``run`` does the same before any call)."""

from __future__ import annotations

import json
import time

import pytest

from promptweave.errors import TemplateError
from promptweave.prompts.templates import parse_template
from tests.hostile.harness import BASE, TableCase, table_tests

DATA = "data: {path: data/good.jsonl, key: id, src_lang: de, tgt_lang: en}\n"

#: (name, Jinja text, words of the error that say which limit)
ATTACKS = [
    ("format_width", "{{ '{0:>99999999}'.format(source) }}", "format width"),
    ("format_precision", "{{ '{:.99999999f}'.format(1.5) }}", "format width"),
    ("format_zero_pad", "{{ '{:099999999}'.format(1) }}", "format width"),
    ("format_nested_width", "{{ '{0:{1}}'.format(source, 99999999) }}", "taken from arguments"),
    ("format_map_width", "{{ '{a:>99999999}'.format_map({'a': 1}) }}", "format width"),
    ("percent_width", "{{ '%99999999d' % 1 }}", "'%' format width"),
    ("percent_precision", "{{ '%.99999999f' % 1.5 }}", "'%' format width"),
    ("percent_star", "{{ '%*d' % (99999999, 1) }}", "'*' width"),
    ("percent_named", "{{ '%(a)99999999s' % {'a': source} }}", "'%' format width"),
    ("format_filter", "{{ '%99999999s'|format(source) }}", "'%' format width"),
    ("center_method", "{{ source.center(99999999) }}", "center width"),
    ("ljust_method", "{{ source.ljust(99999999) }}", "ljust width"),
    ("rjust_method", "{{ source.rjust(99999999) }}", "rjust width"),
    ("zfill_method", "{{ source.zfill(99999999) }}", "zfill width"),
    ("expandtabs", "{{ ('\\t' * 100000).expandtabs(99999) }}", "expandtabs"),
    ("center_filter", "{{ source|center(99999999) }}", "center width"),
    ("indent_filter", "{{ (source ~ '\\n' ~ source)|indent(99999999) }}", "indent width"),
    ("indent_string", "{{ ('a\\n' * 400000)|indent(' ' * 90000) }}", "indent"),
    ("batch_fill", "{{ [1]|batch(99999999, 'x')|list }}", "batch width"),
    ("slice_fill", "{{ [1, 2]|slice(99999999, 'x')|list }}", "slice width"),
    ("wordwrap_wrapstring", "{{ ('ab ' * 300000)|wordwrap(1, wrapstring='x' * 100) }}", "wordwrap"),
    ("replace_method", "{{ ('ab' * 500000).replace('a', 'a' * 100) }}", "replace"),
    ("replace_filter", "{{ ('ab' * 500000)|replace('a', 'a' * 100) }}", "replace"),
    ("replace_empty", "{{ ('x' * 1000000).replace('', 'yyyyyyyyyy') }}", "replace"),
    ("join_method", "{{ ','.join(['x' * 1000000] * 10) }}", "join"),
    ("join_string", "{{ ('y' * 100).join('x' * 1000000) }}", "join"),
    ("join_filter", "{{ ('x' * 1000000)|join('y' * 100) }}", "join"),
    ("join_filter_list", "{{ (['x' * 1000000] * 10)|join }}", "join"),
    ("range_nested", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "loop iterations"),
    ("range_huge", "{% for i in range(10**9) %}{% endfor %}", "range of"),
    ("loop_over_string", "{% set s = 'x' * 1000000 %}{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}",
     "loop iterations"),
    ("loop_recursive", "{% for x in [[1, [2]]] recursive %}{{ loop([x] * 1) if x is iterable else x }}{% endfor %}",
     "recursion"),
    ("lipsum_many", "{{ lipsum(100000) }}", "lipsum n="),
    ("lipsum_long", "{{ lipsum(5, max=99999999) }}", "lipsum max="),
    ("concat_doubling", "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s|length }}", "'~'"),
    ("plus_doubling", "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
     "{% endfor %}{{ ns.s|length }}", "'+'"),
    ("list_doubling", "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
     "{% endfor %}{{ ns.s|length }}", "'+'"),
    ("int_squaring", "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
     "{% endfor %}{{ ns.n > 0 }}", "bits"),
    ("power", "{{ 7 ** 99999999 }}", "'**'"),
    ("repeat", "{{ 'x' * 99999999 }}", "'*'"),
    ("repeat_list", "{{ [0] * 99999999 }}", "'*'"),
    ("macro_exponential", "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
     "longer than"),
    ("macro_deep", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
    ("output_size", "{% set s = 'x' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}", "rendered text"),
    ("output_many_small", "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}", "rendered text"),
    # the step budget or the 2 s clock, whichever comes first on a loaded machine
    ("call_count", "{% for i in range(500000) %}{{ source.upper() }}{{ source.lower() }}{% endfor %}",
     "hit a sandbox limit"),
]


def _template(text: str) -> str:
    return "messages:\n  - role: user\n    content: " + json.dumps(text) + "\n"


CASES = [TableCase(f"sandbox_{name}", BASE + DATA + "steps:\n  - id: out\n    generate: {template: {d}/t.yaml}\n",
                   ["'steps[0].generate'", "t.yaml", words], "generate:", {"t.yaml": _template(text)})
         for name, text, words in ATTACKS]

table_results, test_validate, test_run = table_tests(CASES)


def test_enough_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("name, text, words", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_limit_is_named_and_fast(name: str, text: str, words: str) -> None:
    """In-process: each attack stops within a few seconds (the time budget is 2 s) naming its limit."""
    tpl = parse_template(_template(text), "t.yaml")
    start = time.monotonic()
    with pytest.raises(TemplateError) as info:
        tpl.render({"source": "Hallo Welt.", "tgt_lang_name": "English"})
    assert time.monotonic() - start < 10
    assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("{{ '%5d' % 3 }}|{{ '{:>5}'.format(1) }}|{{ 'a'|center(5) }}|{{ 'ab'|indent(2, true) }}", "    3|    1|  a  |  ab"),
    ("{% for i in range(3) %}{{ i ~ ',' }}{% endfor %}{{ ['a', 'b']|join('-') }}", "0,1,2,a-b"),
    ("{{ ('x' * 10).replace('x', 'yy') }}{{ source.zfill(12) }}", "yyyyyyyyyyyyyyyyyyyy0Hallo Welt."),
    ("{% for ex in examples %}{{ ex.source }}={{ ex.target }};{% endfor %}", "a=A;b=B;"),
])
def test_ordinary_templates_still_render(text: str, expected: str) -> None:
    tpl = parse_template(_template(text), "t.yaml")
    out = tpl.render({"source": "Hallo Welt.", "examples": [{"source": "a", "target": "A"},
                                                            {"source": "b", "target": "B"}]})
    assert out[0].content == expected

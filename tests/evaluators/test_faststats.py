"""faststats reproduces sacreBLEU exactly: the same statistics (values and types) and the same
segment scores (compared by ``repr``, i.e. bit for bit) as sacreBLEU's own code, on real WMT22
data, on generated text and on hand-picked edge cases; and corpus scores and signatures through
the streaming path equal ``sacrebleu.corpus_bleu`` / ``corpus_chrf``."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from promptweave.evaluators import create_metric, faststats, ngramcount, segstats
from promptweave.evaluators.faststats import FastBLEU, FastCHRF, fast_stats_for
from promptweave.evaluators.fasttok import tokens_13a, tokens_zh

WMT22 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wmt22"
TOKENIZERS = ["13a", "intl", "zh", "char", "none"]


def sacre(corpus_m: Any, sentence_m: Any, hyps: list[str], streams: list[list[str | None]]) -> tuple[list, list]:
    stats = corpus_m._extract_corpus_statistics(hyps, streams)
    return stats, [sentence_m._aggregate_and_compute([s]).score for s in stats]


def assert_same(corpus_m: Any, sentence_m: Any, hyps: list[str], streams: list[list[str | None]]) -> None:
    fast = fast_stats_for(corpus_m, sentence_m)
    assert fast is not None
    want_stats, want_segs = sacre(corpus_m, sentence_m, hyps, streams)
    got_stats = fast.stats(hyps, streams)
    for i, (got, want) in enumerate(zip(got_stats, want_stats)):
        assert got == want, (i, hyps[i], [s[i] for s in streams])
        assert [type(x) for x in got] == [type(x) for x in want]
    assert len(got_stats) == len(want_stats)
    got_segs = [fast.segment_score(s) for s in got_stats]
    assert [repr(x) for x in got_segs] == [repr(float(x)) for x in want_segs]


def bleu_pair(**options: Any) -> tuple[BLEU, BLEU]:
    """As the bleu metric builds them: the sentence metric uses effective order."""
    return BLEU(**options), BLEU(**{**options, "effective_order": True})


# -- tokenizers ------------------------------------------------------------------------------

EDGE = ["", " ", "a..", "a. .b", "1.,2", "..,", ",.,.", "x.5", "5.x", "3,000.50,", "e.g.,", "(hi).", "a-b",
        "1-2", "1--2", "-1-", "9-\n3", "line-\nbreak", "a\nb", "&amp;&quot;&lt;&gt;", "&amp;amp;",
        "<skipped>x", "<skip<skipped>ped>", "tab\there", "  many   spaces  ", "end .", "$5/6@a{b}~c`d_e^f",
        "«quote»", "\u00a0nbsp\u00a0.", "\u3000ideographic\u3000space", "\x1cfs\x1dgs", "\r\n.", "...", ".",
        ",", "1.", ".1", "a,1", "1,a", "中文，测试。", "日本語のテキスト", "\u2000\u2001\u2a6d\u2a6e\u2f80\u2f81",
        "\U00020000\U0002a6d6 x", "😀👍🏽 e\u0301 \u0301", "İstanbul ǅ ß ﬁ", "\ud800 lone"]


@pytest.mark.parametrize("line", EDGE)
def test_tokenizers_edge_cases(line: str) -> None:
    assert tokens_13a(line) == Tokenizer13a()(line).split()
    assert tokens_zh(line) == TokenizerZh()(line).split()


def test_zh_character_class_matches_sacrebleu_on_every_bmp_code_point() -> None:
    # sacreBLEU tests each char against its ranges by string comparison; two bounds are two
    # characters long ('\u20000'), which our code-point class must reproduce
    is_zh = TokenizerZh._is_chinese_char.__wrapped__  # the uncached test
    from promptweave.evaluators import fasttok

    tokens_zh("x")
    pattern = fasttok._ZH
    assert pattern is not None
    odd = [c for c in map(chr, range(0x10000)) if (pattern.fullmatch(c) is not None) != is_zh(c)]
    assert odd == []
    for cp in (0x10000, 0x20000, 0x2A6D6, 0x2F800, 0x10FFFF):
        assert (pattern.fullmatch(chr(cp)) is not None) == is_zh(chr(cp))


FRAGMENTS = ["the", "The", "cat", "Sat", ".", ",", "..", "1", "2.5", "1,000", "-", "3-4", "(", ")", '"', "'",
             "&amp;", "&quot;", "&lt;", "&gt;", "<skipped>", "-\n", "\n", "\t", "  ", " ", " ", " ", "中文", "你好",
             "。", "，", "日本語", "한국어", "😀", "👍🏽", "e\u0301", "\u0301", "Ärger", "İ", "ß", "\u00a0", "\u3000",
             "\u2001", "\u2a6d", "ﬁ", "$", "%", "@", "/", "{", "~", "`", "_", "!", "?", ";", ":", "#"]
TEXT = st.one_of(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join),
    st.text(max_size=40),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(TEXT)
def test_tokenizers_generated(line: str) -> None:
    assert tokens_13a(line) == Tokenizer13a()(line).split()
    assert tokens_zh(line) == TokenizerZh()(line).split()


# -- statistics and segment scores on generated text ------------------------------------------

ROWS = st.lists(st.tuples(TEXT, st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=3)
                          .filter(lambda refs: any(r is not None for r in refs))), min_size=1, max_size=6)


def to_streams(rows: list[tuple[str, list[str | None]]]) -> tuple[list[str], list[list[str | None]]]:
    width = max(len(refs) for _, refs in rows)
    return ([h for h, _ in rows],
            [[refs[k] if k < len(refs) else None for _, refs in rows] for k in range(width)])


@SETTINGS
@given(ROWS, st.sampled_from(TOKENIZERS), st.booleans())
def test_bleu_generated(rows: list, tokenize: str, lowercase: bool) -> None:
    hyps, streams = to_streams(rows)
    assert_same(*bleu_pair(tokenize=tokenize, lowercase=lowercase), hyps, streams)
    single = [[r for r in refs if r is not None][0] for _, refs in rows]
    for limit in (None, 2 ** 10):
        with batched(limit):
            assert_same(*bleu_pair(tokenize=tokenize, lowercase=lowercase), hyps, [single])


@SETTINGS
@given(ROWS, st.sampled_from(["none", "floor", "add-k", "exp"]), st.sampled_from([None, 0, 0.1, 1, 2.5]),
       st.integers(1, 6), st.booleans())
def test_bleu_smoothing_and_orders_generated(rows: list, method: str, value: Any, order: int, eff: bool) -> None:
    hyps, streams = to_streams(rows)
    m = BLEU(smooth_method=method, smooth_value=value, max_ngram_order=order, effective_order=eff)
    assert_same(m, m, hyps, streams)
    with batched():
        assert_same(m, m, hyps, [[[r for r in refs if r is not None][-1] for _, refs in rows]])


@SETTINGS
@given(ROWS, st.integers(0, 7), st.integers(0, 3), st.integers(0, 3), st.booleans(), st.booleans(), st.booleans())
def test_chrf_generated(rows: list, char_order: int, word_order: int, beta: int, lowercase: bool,
                        whitespace: bool, eps: bool) -> None:
    if char_order + word_order == 0:
        return
    hyps, streams = to_streams(rows)
    m = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
             whitespace=whitespace, eps_smoothing=eps)
    assert_same(m, m, hyps, streams)


SINGLE = st.lists(st.tuples(TEXT, TEXT.map(lambda r: [r])), min_size=1, max_size=40)


class batched:
    """Batch (numpy) matching for chunks of ``minimum`` rows and up (1: any; a huge number: never);
    ``limit`` forces the dense re-ranking of keys at every order, the path a large alphabet takes."""

    def __init__(self, limit: int | None = None, minimum: int = 1) -> None:
        self.limit, self.minimum = limit, minimum

    def __enter__(self) -> None:
        self.saved = faststats.BATCH_MIN, ngramcount._LIMIT
        faststats.BATCH_MIN = self.minimum
        if self.limit:
            ngramcount._LIMIT = self.limit

    def __exit__(self, *exc: object) -> None:
        faststats.BATCH_MIN, ngramcount._LIMIT = self.saved


@SETTINGS
@given(SINGLE, st.integers(1, 7), st.integers(0, 2), st.booleans(), st.booleans(), st.sampled_from([None, 2 ** 12]))
def test_chrf_batched_generated(rows: list, char_order: int, word_order: int, lowercase: bool, whitespace: bool,
                                limit: int | None) -> None:
    hyps, streams = to_streams(rows)
    m = CHRF(char_order=char_order, word_order=word_order, lowercase=lowercase, whitespace=whitespace)
    with batched(limit):
        assert_same(m, m, hyps, streams)


@pytest.mark.parametrize("limit", [None, 2 ** 16])
def test_batched_wmt22_with_and_without_reranking(limit: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    hyps, refs = wmt22("jdexplore_wmt22.en-ja.jsonl")
    ranked = []
    dense = ngramcount._dense
    monkeypatch.setattr(ngramcount, "_dense", lambda a, b: ranked.append(1) or dense(a, b))
    with batched(limit):
        for m in (CHRF(), CHRF(word_order=2, whitespace=True)):
            assert_same(m, m, hyps[:600], [refs[:600]])
        assert_same(*bleu_pair(tokenize="char"), hyps[:600], [refs[:600]])
    assert ranked or not limit  # the small limit really took the re-ranking path


def test_long_repetitive_and_degenerate_segments() -> None:
    rnd = random.Random(14)
    words = ["the", "a", "of", "der", "die", "中", "文", ".", ",", "1", "2", "-", "😀", "ab", "ba"]
    long = [" ".join(rnd.choice(words) for _ in range(rnd.randint(200, 1500))) for _ in range(6)]
    hyps = long + ["", "   ", ".", "the the the the the", "a a a a a a a a", "x" * 3000, "ab" * 500]
    refs = list(reversed(long)) + ["", "x", "", "the the the", "a a a", "x" * 2000, "ba" * 700]
    alt = [None, "the"] * (len(hyps) // 2) + [None] * (len(hyps) % 2)
    for streams in ([refs], [refs, alt], [alt[:1] + refs[1:], refs]):
        assert_same(*bleu_pair(), hyps, streams)
        assert_same(*bleu_pair(tokenize="zh"), hyps, streams)
        for wo in (0, 2):
            m = CHRF(word_order=wo)
            assert_same(m, m, hyps, streams)
            with batched(2 ** 14):
                assert_same(m, m, hyps, streams)
                assert_same(*bleu_pair(), hyps, streams)


def test_lone_surrogates_and_astral_characters() -> None:
    hyps = ["a\ud800b \udfff x", "\U0010ffff\ud800 😀", "", "\U0001f600\U0001f600 ok"] * 3
    refs = ["a\ud800b", "\U0010ffff \ud800\ud800 😀", "x", "\U0001f600 ok ok"] * 3
    for minimum in (1, 10 ** 9):  # numpy batches, then strings row by row
        with batched(minimum=minimum):
            for m in (CHRF(), CHRF(word_order=2, whitespace=True)):
                assert_same(m, m, hyps, [refs])
            assert_same(*bleu_pair(), hyps, [refs])
            assert_same(*bleu_pair(tokenize="char"), hyps, [refs])


def test_multi_reference_ties_and_missing_references() -> None:
    # several references of equal f-score or equal distance in length: sacreBLEU keeps the first
    # best chrF reference and the shorter closest BLEU length
    hyps = ["a b c d", "a b c d", "x y", "a b"]
    streams = [["a b c", "a b c d e", None, "a b"], ["a b c e", "d c b a", "x y", "b a"], [None, "a b c d", "y x", None]]
    assert_same(*bleu_pair(), hyps, streams)
    assert_same(*bleu_pair(smooth_method="floor"), hyps, streams)
    for wo in (0, 2):
        m = CHRF(word_order=wo)
        assert_same(m, m, hyps, streams)


# -- real data ------------------------------------------------------------------------------------

def wmt22(name: str) -> tuple[list[str], list[str]]:
    path = WMT22 / name
    if not path.exists():
        pytest.skip(f"WMT22 data not found at {path} (see ../shared/data/README.md)")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return [r["hypothesis"] for r in rows], [r["reference"] for r in rows]


PAIRS = ["cs-en", "de-en", "en-cs", "en-de", "en-ja", "en-ru", "en-zh", "ja-en", "ru-en", "zh-en"]


@pytest.mark.parametrize("lp", PAIRS)
def test_wmt22_default_metrics(lp: str) -> None:
    hyps, refs = wmt22(f"jdexplore_wmt22.{lp}.jsonl")
    tgt = lp.split("-")[1]
    for name in ("bleu", "chrf"):
        metric = create_metric(name, lp.split("-")[0], tgt)
        assert_same(metric._corpus_metric, metric._sentence_metric, hyps, [refs])
    m = CHRF(word_order=2)
    assert_same(m, m, hyps[:400], [refs[:400]])


@pytest.mark.parametrize("tokenize", TOKENIZERS)
@pytest.mark.parametrize("lowercase", [False, True])
def test_wmt22_every_tokenizer(tokenize: str, lowercase: bool) -> None:
    hyps, refs = wmt22("jdexplore_wmt22.en-zh.jsonl" if tokenize == "zh" else "jdexplore_wmt22.de-en.jsonl")
    hyps, refs = hyps[:500], refs[:500]
    assert_same(*bleu_pair(tokenize=tokenize, lowercase=lowercase), hyps, [refs])
    # two references: the other direction's hypothesis as a second reference, one missing
    alt = [None if i % 7 == 0 else h[::-1] for i, h in enumerate(hyps)]
    assert_same(*bleu_pair(tokenize=tokenize, lowercase=lowercase), hyps, [refs, alt])
    m = CHRF(lowercase=lowercase, word_order=2 if lowercase else 0)
    assert_same(m, m, hyps, [refs, alt])


# -- wiring: chunk_stats, streaming corpus scores and signatures ----------------------------------

def test_fast_path_covers_bleu_and_chrf_and_not_ter() -> None:
    bleu, chrf = create_metric("bleu", "de", "en"), create_metric("chrf", "de", "en", word_order=2)
    assert isinstance(fast_stats_for(bleu._corpus_metric, bleu._sentence_metric), FastBLEU)
    assert isinstance(fast_stats_for(chrf._corpus_metric, chrf._sentence_metric), FastCHRF)
    ter = TER()
    assert fast_stats_for(ter, ter) is None

    class MyBLEU(BLEU):  # a subclass may change any rule: never guessed at
        pass

    assert fast_stats_for(MyBLEU(), MyBLEU()) is None


def test_unchecked_sacrebleu_version_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    m = CHRF()
    monkeypatch.setattr(sacrebleu, "__version__", "9.0.0")
    assert fast_stats_for(m, m) is None


@pytest.mark.parametrize(("name", "options"), [("bleu", {}), ("bleu", {"tokenize": "intl", "lowercase": True}),
                                              ("chrf", {}), ("chrf", {"word_order": 2}), ("ter", {})])
def test_chunk_stats_same_as_sacrebleu(name: str, options: dict[str, Any]) -> None:
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him.", ""]
    streams: list[list[str | None]] = [["The dog bit the man.", "It was not unexpected.", None, "x"],
                                       ["The dog had bit the man.", None, "The man had bitten the dog.", None]]
    spec = segstats.metric_spec(name, "de", "en", options)
    metric = create_metric(name, "de", "en", **options)
    want_stats, want_segs = sacre(metric._corpus_metric, metric._sentence_metric, hyps, streams)
    stats, segs, nrefs = segstats.chunk_stats(spec, hyps, streams)
    assert stats == want_stats and [repr(s) for s in segs] == [repr(float(s)) for s in want_segs]
    assert nrefs == {1, 2}
    assert (segstats._FAST.get(spec) is not None) == (name != "ter")


@pytest.mark.parametrize("lp", ["de-en", "en-zh"])
def test_streaming_corpus_scores_and_signatures_equal_sacrebleu(lp: str) -> None:
    hyps, refs = wmt22(f"jdexplore_wmt22.{lp}.jsonl")
    src, tgt = lp.split("-")
    for name, options, want in [
        ("bleu", {}, lambda: (sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh" if tgt == "zh" else "13a"),
                              BLEU(tokenize="zh" if tgt == "zh" else "13a"))),
        ("chrf", {}, lambda: (sacrebleu.corpus_chrf(hyps, [refs]), CHRF())),
        ("chrf", {"word_order": 2}, lambda: (sacrebleu.corpus_chrf(hyps, [refs], word_order=2), CHRF(word_order=2))),
    ]:
        metric = create_metric(name, src, tgt, **options)
        result = segstats.score_chunked(metric, segstats.metric_spec(name, src, tgt, options), hyps, refs,
                                        pool=None, chunk=700)
        score, m = want()
        m.corpus_score(hyps, [refs])  # sets the reference count that its signature shows
        assert repr(result.corpus) == repr(float(score.score))
        assert result.signature == str(m.get_signature())
        assert result.extra["formatted"] == score.format()
        assert len(result.segments) == len(hyps)


# -- differential fuzz against sacreBLEU's public API (tests/evaluators/fuzz_faststats.py) --------

@pytest.mark.parametrize("seed", [1, 2])
def test_differential_fuzz_against_sacrebleu(seed: int) -> None:
    # a small seeded share of the adversarial fuzz: unicode from many blocks, every kind of
    # whitespace, invisible and control characters, long tokens, repeats, None/empty references,
    # every offline tokenizer and the option space, chunked as the pool chunks
    from . import fuzz_faststats

    counts, failures = fuzz_faststats.run(cases=12, seed=seed)
    assert failures == []
    assert {"bleu:13a", "bleu:zh", "bleu:intl", "bleu:char", "bleu:none", "chrf"} <= set(counts)


@pytest.mark.parametrize("fast", ["1", "0"])
@pytest.mark.parametrize(("tokenized", "chunk"), [(120, 60), (240, 100), (99, 50), (0, 100)])
def test_tokenized_period_warning_once_per_corpus_as_sacrebleu(fast: str, tokenized: int, chunk: int,
                                                              caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # sacreBLEU warns once when 100+ hypotheses of the corpus end in " ."; counted per chunk, 120
    # such lines in chunks of 60 gave no warning and 240 in chunks of 100 gave two
    monkeypatch.setenv("PROMPTWEAVE_FASTSTATS", fast)
    hyps = ["a b ."] * tokenized + ["a b"] * (300 - tokenized)
    for name, options in (("bleu", {}), ("bleu", {"force": True}), ("chrf", {})):
        caplog.clear()
        want = (BLEU(**options) if name == "bleu" else CHRF()).corpus_score(hyps, [hyps])
        expected = sum("100 lines" in r.getMessage() for r in caplog.records)
        caplog.clear()
        metric = create_metric(name, **options)
        got = segstats.score_chunked(metric, segstats.metric_spec(name, None, None, options), hyps, hyps, None, chunk)
        assert sum("100 lines" in r.getMessage() for r in caplog.records) == expected
        assert repr(got.corpus) == repr(float(want.score))
        assert expected == (name == "bleu" and not options and tokenized >= 100)

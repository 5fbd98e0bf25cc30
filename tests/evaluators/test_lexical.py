"""BLEU, chrF and TER tables with independently known values.

Expected numbers are either worked out by hand (the derivation is in the comment) or taken from
sacrebleu's README and its own test tables (test/test_bleu.py, test_sentence_bleu.py, test_chrf.py,
test_ter.py), never produced by our code.
"""

from __future__ import annotations

import logging
import math

import pytest

from promptweave.errors import DataError, PromptweaveError
from promptweave.evaluators import create_metric
from promptweave.evaluators.lexical import default_tokenizer

TOL = 1e-3

# sacrebleu README: two reference streams, given here row-wise (one list per segment)
README_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [["The dog bit the man.", "The dog had bit the man."],
               ["It was not unexpected.", "No one was surprised."],
               ["The man bit him first.", "The man had bitten the dog."]]

CORPUS_BLEU = [
    # (hyps, refs, options, expected corpus BLEU)
    (README_HYPS, README_REFS, {}, 48.530827),  # README: BLEU = 48.53 ... nrefs:2
    (README_HYPS, README_REFS, {"tokenize": "none"}, 49.1919566),  # sacrebleu test_bleu.py
    (README_HYPS, README_REFS, {"tokenize": "intl"}, 43.91623493),
    (README_HYPS, README_REFS, {"max_ngram_order": 1}, 77.65),
    (README_HYPS, README_REFS, {"max_ngram_order": 2}, 60.50),
    (["", "", ""], README_REFS, {}, 0.0),  # empty hypotheses are scored, not dropped
    # README: first segment has only its second reference -> nrefs:var, 29.44
    (README_HYPS, [[None, "The dog had bit the man."], README_REFS[1], README_REFS[2]], {}, 29.44),
    # by hand: precisions 7/8, 5/6, 3/4, 1/2, BP 1 -> (105/384)^(1/4)
    (["a b c d", "e f g h"], ["a b c d", "e f g x"], {}, 100 * (105 / 384) ** 0.25),
    # by hand: all precisions 1, hyp 4 vs ref 5 tokens -> BP = exp(1 - 5/4)
    (["a b c d"], ["a b c d e"], {}, 100 * math.exp(-0.25)),
    # by hand: 3 tokens, no 4-gram -> corpus BLEU (no effective order) is 0
    (["a b c"], ["a b c"], {}, 0.0),
]

# sentence-level BLEU uses effective order; the #98 example is from sacrebleu test_sentence_bleu.py
SYS98 = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"
REF98 = "producţia de zahăr brut se exprimă în zahăr alb;"
SEGMENT_BLEU = [
    (SYS98, REF98, {}, 8.493),
    (SYS98, REF98, {"smooth_method": "none"}, 0.0),
    (SYS98, REF98, {"smooth_method": "floor", "smooth_value": 0.5}, 10.10),
    (SYS98, REF98, {"smooth_method": "add-k", "smooth_value": 2}, 21.389),
    (SYS98, REF98, {"tokenize": "none"}, 7.347),
    (SYS98, REF98, {"tokenize": "char"}, 40.8759),
    (SYS98, REF98, {"tokenize": "char", "lowercase": True}, 42.0267),
    ("this is a cat", "okay thanks", {}, 0.0),  # sacrebleu #141
    ("a b c", "a b c", {}, 100.0),  # by hand: orders 1-3 all match, 4-grams absent -> ignored
    ("test", "a test", {}, 100 * math.exp(-1)),  # by hand: p1 = 1, BP = exp(1 - 2/1)
    # by hand: p1 2/3, p2 0/2 -> 1/(2*2), p3 0/1 -> 1/(4*1) (exp smoothing), 3 orders
    ("a little test", "a test", {}, 100 * (1 / 24) ** (1 / 3)),
    # by hand: p 3/4, 2/3, 1/2, 0/1 -> 1/(2*1)
    ("e f g h", "e f g x", {}, 100 * 0.125 ** 0.25),
]

CORPUS_CHRF = [
    (README_HYPS, README_REFS, {}, 59.73),  # README: chrF2 = 59.73
    # sacrebleu test_chrf.py, effective-order cases with beta=3
    (["a"], ["a"], {"beta": 3}, 100.0),
    ([""], ["reference"], {"beta": 3}, 0.0),
    (["a b c"], ["abc"], {"beta": 3}, 100.0),
    (["a", "b"], ["a", "c"], {"beta": 3}, 50.0),
    (["aa"], ["ab"], {"beta": 3}, 25.0),
    (["abcdefg"], ["hijklmnop"], {"beta": 3, "eps_smoothing": True}, 0.0),
    (["aa"], ["ab"], {"beta": 3, "eps_smoothing": True}, 8.3333),
    (["Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."],
     ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."],
     {"beta": 3, "whitespace": True}, 67.3481606),
]

CORPUS_TER = [
    # sacrebleu test_ter.py (expected as a fraction there, x100 here)
    (["aaaa bbbb cccc dddd"], ["aaaa bbbb cccc dddd"], 0.0),
    (["dddd eeee ffff"], ["aaaa bbbb cccc"], 100.0),
    ([""], ["a"], 100.0),
    (["d e f g h a b c"], ["a b c d e f g h"], 100 / 8),  # one shift fixes it
]


@pytest.mark.parametrize("hyps, refs, options, expected", CORPUS_BLEU)
def test_corpus_bleu(hyps, refs, options, expected):
    result = create_metric("bleu", "en", "en", **options).score(hyps, refs)
    assert result.corpus == pytest.approx(expected, abs=5e-3 if expected in (77.65, 60.50, 29.44) else TOL)
    assert len(result.segments) == len(hyps)


@pytest.mark.parametrize("hyp, ref, options, expected", SEGMENT_BLEU)
def test_segment_bleu_uses_effective_order(hyp, ref, options, expected):
    result = create_metric("bleu", tgt_lang="en", **options).score([hyp], [ref])
    assert result.segments[0] == pytest.approx(expected, abs=TOL)
    assert "eff:yes" in result.extra["segment_signature"]


@pytest.mark.parametrize("hyps, refs, options, expected", CORPUS_CHRF)
def test_corpus_chrf(hyps, refs, options, expected):
    result = create_metric("chrf", **options).score(hyps, refs)
    assert result.corpus == pytest.approx(expected, abs=5e-3 if expected == 59.73 else TOL)


@pytest.mark.parametrize("hyps, refs, expected", CORPUS_TER)
def test_corpus_ter(hyps, refs, expected):
    result = create_metric("ter").score(hyps, refs)
    assert result.corpus == pytest.approx(expected, abs=TOL)
    assert result.higher_is_better is False


def test_segment_scores_are_sentence_scores():
    # a one-segment corpus is that segment's sentence score, for chrF and TER alike
    hyps, refs = ["the cat sat", "a dog barked loudly"], ["the cat sat down", "the dog barked"]
    for name in ("chrf", "ter"):
        both = create_metric(name).score(hyps, refs)
        for i in range(2):
            alone = create_metric(name).score([hyps[i]], [refs[i]])
            assert both.segments[i] == pytest.approx(alone.corpus, abs=1e-9)


def test_signatures():
    bleu = create_metric("bleu", "en", "de")
    bleu.score(["a b c d"], ["a b c d"])
    assert bleu.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    chrfpp = create_metric("chrf", word_order=2).score(README_HYPS, README_REFS)
    assert "nrefs:2" in chrfpp.signature and "nw:2" in chrfpp.signature
    ter = create_metric("ter", case_sensitive=True).score(["a"], ["a"])
    assert "case:mixed" in ter.signature
    assert create_metric("bleu").signature.startswith("nrefs:?")  # before any scoring


@pytest.mark.parametrize("tgt, expected", [("en", "13a"), ("de", "13a"), ("zh", "zh"), (None, "13a"),
                                           ("zh-Hant", "zh")])
def test_default_tokenizer(tgt, expected):
    assert default_tokenizer(tgt) == expected
    assert f"tok:{expected}" in create_metric("bleu", tgt_lang=tgt).signature


def test_mecab_fallback_is_visible(caplog):
    # without MeCab we fall back to 'char' and say so; with it, ja-mecab is used as sacrebleu does
    try:
        import MeCab  # noqa: F401
        expected = "ja-mecab"
    except ImportError:
        expected = "char"
    with caplog.at_level(logging.WARNING):
        metric = create_metric("bleu", "en", "ja")
    assert f"tok:{expected}" in metric.signature
    if expected == "char":
        assert "sacrebleu[ja]" in caplog.text


def test_explicit_tokenizer_wins():
    assert "tok:intl" in create_metric("bleu", "en", "zh", tokenize="intl").signature


@pytest.mark.parametrize("name, options, message", [
    ("chrf", {"tokenize": "13a"}, "unknown option"),
    ("bleu", {"tokenize": "nope"}, "unknown tokenizer"),
])
def test_bad_options(name, options, message):
    with pytest.raises(PromptweaveError, match=message):
        create_metric(name, **options)


def test_reference_errors():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        create_metric("bleu").score(["a", "b"], ["a"])
    with pytest.raises(DataError, match="needs references"):
        create_metric("chrf").score(["a"], None)
    with pytest.raises(DataError, match="at least one reference"):
        create_metric("bleu").score(["a"], [[None]])


@pytest.mark.parametrize("tokenize", ["flores200", "spm"])
def test_spm_tokenizer_without_its_model_names_the_file(tokenize, tmp_path, monkeypatch):
    # offline, sacrebleu's download of the model fails with a bare urlopen error; ours names the
    # file, its source and the fix (the download is replaced: tests never touch the network)
    pytest.importorskip("sentencepiece")
    import sacrebleu.tokenizers.tokenizer_spm as spm
    import sacrebleu.utils

    def offline(url, path):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    for module in (spm, sacrebleu.utils):
        monkeypatch.setattr(module, "SACREBLEU_DIR", str(tmp_path))
    monkeypatch.setattr(spm, "download_file", offline)
    with pytest.raises(PromptweaveError) as info:
        create_metric("bleu", tokenize=tokenize)
    message = str(info.value)
    assert "\n" not in message and f"tokenizer '{tokenize}'" in message
    assert str(tmp_path / "models") in message and "https://" in message and "SACREBLEU" in message

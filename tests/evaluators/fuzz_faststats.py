"""Differential fuzz of the fast BLEU/chrF path (:mod:`promptweave.evaluators.faststats`, reached
through :func:`~promptweave.evaluators.segstats.chunk_stats`) against sacreBLEU's public API.

For each random chunk of segments and each metric configuration it compares, with sacreBLEU as
the oracle: every segment's statistics (values and types), every segment score (``repr``, i.e.
bit for bit, against ``sentence_score``), the corpus score summed from chunks against
``corpus_score`` and the signature. Run it longer by hand::

    PYTHONPATH=$PWD python -m tests.evaluators.fuzz_faststats --cases 2000 --seed 1

``test_faststats.py`` runs a small seeded share of it on every test run.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from typing import Any

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

from promptweave.evaluators import create_metric, faststats, segstats

#: whitespace of every kind str.split() knows, and characters that look like it but are not
SPACES = [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
          "\u1680", "\u2000", "\u2007", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\x00", "\x07", "\x1b", "\x7f"]
PUNCT = list(".,;:!?-()[]{}<>\"'`~@#$%^&*_+=/\\|") + ["...", ".,", ",.", "--", "—", "–", "«", "»", "„", "“",
                                                         "。", "，", "、", "！", "？", "¿", "¡", "…", "·", "‧"]
WORDS = ["the", "The", "THE", "cat", "a", "of", "der", "Straße", "İstanbul", "ǅ", "ﬁne", "ΣΟΦΟΣ", "naïve",
         "e\u0301", "\u0301", "a\u0308\u0304", "中文", "你好", "世界", "日本語", "ひらがな", "カタカナ", "한국어",
         "ภาษาไทย", "สวัสดี", "العربية", "مرحبا", "עברית", "\u202eRTL\u202c", "\u200fx", "हिन्दी", "Ελληνικά",
         "русский", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "🇩🇪", "\U00020000", "\U0002a6d6", "\U0002f800",
         "\U0001d400", "\U0010fffd", "\u2a6d", "\u2a6e", "\u2f80", "\u2f81", "\u2001x", "ＡＢＣ", "１２３",
         "<skipped>", "&amp;", "&quot;", "&lt;", "&gt;", "&amp;amp;", "-\n", "x-\ny"]
NUMBERS = ["1", "42", "3.14", "1,000", "1.000,50", "10 000", "1,234,567.89", "-5", "5-6", "1-2-3", "2-", "-",
           ".5", "5.", ",5", "5,", "1e-5", "٣٤", "०१२", "²"]


def _piece(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.35:
        return rnd.choice(WORDS)
    if kind < 0.5:
        return rnd.choice(PUNCT) * rnd.choice((1, 1, 1, 2, 5))
    if kind < 0.6:
        return rnd.choice(NUMBERS)
    if kind < 0.72:
        return rnd.choice(SPACES)
    if kind < 0.77:
        return rnd.choice(INVISIBLE)
    if kind < 0.87:  # random code points from anywhere; lone surrogates rarely (JSON can carry them)
        return "".join(chr(rnd.choice((rnd.randrange(0x20, 0x3000), rnd.randrange(0xE000, 0x10FFFF),
                                       rnd.randrange(0x3000, 0xD800), rnd.randrange(0, 0x20),
                                       rnd.randrange(0xD800, 0xE000) if rnd.random() < 0.2 else 0x41)))
                       for _ in range(rnd.randint(1, 4)))
    if kind < 0.9:
        return rnd.choice("abcxyz.,-") * rnd.randint(20, 400)  # a very long token
    return " "


def text(rnd: random.Random) -> str:
    """One random segment; some are empty, whitespace-only or one character long."""
    shape = rnd.random()
    if shape < 0.04:
        return ""
    if shape < 0.08:
        return "".join(rnd.choice(SPACES) for _ in range(rnd.randint(1, 4)))
    if shape < 0.12:
        return _piece(rnd)[:1] or "x"
    parts = [_piece(rnd) for _ in range(rnd.randint(1, 30))]
    if rnd.random() < 0.15:  # repeated n-grams
        parts = parts[:rnd.randint(1, 4)] * rnd.randint(2, 12)
    glue = rnd.choice(("", " ", " ", " ", "\t"))
    return glue.join(parts)


def mutate(rnd: random.Random, s: str) -> str:
    """A reference sharing much of ``s``: identical, re-cased, or with a few pieces changed."""
    r = rnd.random()
    if r < 0.2:
        return s
    if r < 0.3:
        return s.upper() if rnd.random() < 0.5 else s.swapcase()
    words = s.split(" ")
    for _ in range(rnd.randint(1, 3)):
        if words and rnd.random() < 0.5:
            del words[rnd.randrange(len(words))]
        else:
            words.insert(rnd.randint(0, len(words)), _piece(rnd))
    return " ".join(words)


def chunk(rnd: random.Random, rows: int, max_refs: int) -> tuple[list[str], list[list[str | None]]]:
    """Hypotheses and reference streams; with several streams some references are ``None``
    (never all of a row's) or empty."""
    hyps = [text(rnd) for _ in range(rows)]
    width = rnd.randint(1, max_refs)
    streams: list[list[str | None]] = [[] for _ in range(width)]
    for h in hyps:
        refs: list[str | None] = [mutate(rnd, h) if rnd.random() < 0.6 else text(rnd) for _ in range(width)]
        if width > 1:
            for k in range(width):
                if rnd.random() < 0.25:
                    refs[k] = None if rnd.random() < 0.7 else ""
            if all(r is None for r in refs):
                refs[rnd.randrange(width)] = text(rnd)
        for k in range(width):
            streams[k].append(refs[k])
    return hyps, streams


def tokenizers() -> list[str]:
    """Every BLEU tokenizer of the installed sacreBLEU that works offline here."""
    import os

    from sacrebleu.tokenizers.tokenizer_spm import SPM_MODELS
    from sacrebleu.utils import SACREBLEU_DIR

    out = []
    for tok in BLEU.TOKENIZERS:
        spm = SPM_MODELS.get("flores101" if tok == "spm" else tok)
        if spm and not os.path.exists(os.path.join(SACREBLEU_DIR, "models", os.path.basename(spm["url"]))):
            continue  # its model is not here: sacreBLEU would download it
        try:
            BLEU(tokenize=tok).corpus_score(["a b ."], [["a b ."]])
        except BaseException:  # noqa: BLE001 - missing MeCab, an spm model that would be downloaded
            continue
        out.append(tok)
    return out


def configs(rnd: random.Random, toks: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Metric configurations, each tokenizer and the option space sampled."""
    for tok in toks:
        yield "bleu", {"tokenize": tok, "lowercase": rnd.random() < 0.5,
                       "smooth_method": rnd.choice(["exp", "none", "floor", "add-k"]),
                       "smooth_value": rnd.choice([None, None, 0, 0.01, 1, 3]),
                       "max_ngram_order": rnd.choice([4, 4, 1, 2, 3, 6, 9]),
                       "effective_order": rnd.random() < 0.3}
    yield "chrf", {"char_order": rnd.choice([6, 6, 1, 2, 3, 9, 20, 0]), "word_order": rnd.choice([0, 2, 2, 1, 4, 10]),
                   "beta": rnd.choice([2, 2, 0, 1, 3]), "lowercase": rnd.random() < 0.5,
                   "whitespace": rnd.random() < 0.3, "eps_smoothing": rnd.random() < 0.5}


def oracle(name: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """Fresh sacreBLEU objects as :mod:`.lexical` configures them (sentence BLEU: effective order)."""
    if name == "bleu":
        return BLEU(**options), BLEU(**{**options, "effective_order": True})
    if name == "chrf":
        return CHRF(**options), CHRF(**options)
    return TER(**options), TER(**options)


def compare(name: str, options: dict[str, Any], hyps: list[str], streams: list[list[str | None]],
            pieces: int) -> str | None:
    """``None`` when the fast path agrees with sacreBLEU on this chunk, else what differs."""
    if name == "chrf" and options["char_order"] + options["word_order"] == 0:
        return None
    corpus_o, sentence_o = oracle(name, options)
    want_stats = corpus_o._extract_corpus_statistics(hyps, streams)
    want_corpus = corpus_o.corpus_score(hyps, streams)
    want_sig = str(corpus_o.get_signature())
    spec = segstats.metric_spec(name, None, None, options)
    metric = create_metric(name, None, None, **options)
    got_stats: list[Any] = []
    got_segs: list[float] = []
    nrefs: set[int] = set()
    total = segstats.StatsSum()
    bounds = sorted({0, len(hyps), *random.Random(len(hyps)).sample(range(len(hyps) + 1), min(pieces, len(hyps) + 1))})
    for a, b in zip(bounds, bounds[1:]):
        st, segs, seen = segstats.chunk_stats(spec, hyps[a:b], [s[a:b] for s in streams])
        got_stats += st
        got_segs += segs
        nrefs |= seen
        for x in st:
            total.add(x)
    for i, (g, w) in enumerate(zip(got_stats, want_stats)):
        if g != w or [type(x) for x in g] != [type(x) for x in w]:
            return f"stats row {i}: got {g} want {w}; hyp={hyps[i]!r} refs={[s[i] for s in streams]!r}"
    if len(got_stats) != len(want_stats):
        return f"{len(got_stats)} rows of statistics, sacreBLEU has {len(want_stats)}"
    for i, g in enumerate(got_segs):
        refs = [s[i] for s in streams if s[i] is not None]
        w = float(sentence_o.sentence_score(hyps[i], refs).score)
        if repr(g) != repr(w):
            return f"segment {i}: got {g!r} want {w!r}; hyp={hyps[i]!r} refs={refs!r}"
    corpus = segstats.corpus_from_sum(metric, total, nrefs)
    if repr(float(corpus.score)) != repr(float(want_corpus.score)) or corpus.format() != want_corpus.format():
        return f"corpus: got {corpus.format()} want {want_corpus.format()}"
    if metric.signature != want_sig:
        return f"signature: got {metric.signature} want {want_sig}"
    return None


def run(cases: int, seed: int, rows: int = 40, with_ter: bool = False,
        log: Any = None) -> tuple[dict[str, int], list[tuple[str, dict[str, Any], str]]]:
    """``cases`` random chunks per configuration kind; returns the cases run per tokenizer/metric
    and the failures (name, options, what differs)."""
    rnd = random.Random(seed)
    toks = tokenizers()
    counts: dict[str, int] = {}
    failures: list[tuple[str, dict[str, Any], str]] = []
    for case in range(cases):
        n = rnd.choice((1, 3, rows, rows, faststats.BATCH_MIN, faststats.BATCH_MIN - 1, 2 * rows,
                        faststats.BATCH_MAX + 1 if rnd.random() < 0.2 else rows))
        hyps, streams = chunk(rnd, n, rnd.choice((1, 1, 3)))
        todo = list(configs(rnd, toks))
        if with_ter:
            todo.append(("ter", {"normalized": rnd.random() < 0.5, "no_punct": rnd.random() < 0.5,
                                 "asian_support": rnd.random() < 0.5, "case_sensitive": rnd.random() < 0.5}))
        for name, options in todo:
            key = f"{name}:{options.get('tokenize', '')}".rstrip(":")
            counts[key] = counts.get(key, 0) + 1
            problem = compare(name, options, hyps, streams, rnd.choice((0, 0, 1, 3)))
            if problem:
                failures.append((name, options, problem))
                if log:
                    log(f"case {case} {name} {options}: {problem[:600]}")
    return counts, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ter", action="store_true", help="also TER (sacreBLEU's own code, chunked)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    counts, failures = run(args.cases, args.seed, with_ter=args.ter, log=print)
    print(f"sacrebleu {sacrebleu.__version__}; {time.perf_counter() - t0:.0f} s; cases per config: {counts}; "
          f"failures: {len(failures)}")


if __name__ == "__main__":
    main()

"""sacreBLEU sufficient statistics per segment, computed in chunks (optionally in a process pool),
summed into corpus scores without a second pass over the texts.

sacreBLEU's corpus BLEU/chrF/TER is a function of the column sums of per-segment statistics
(``_aggregate_and_compute`` = ``_compute_score_from_stats(sum_of_lists(stats))``), and a segment
score is the sentence-level metric applied to that segment's own statistics. :class:`StatsSum`
adds statistics in data order exactly as ``sum_of_lists`` does (same start value, same order), so
corpus scores and signatures are identical to scoring the whole corpus at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from itertools import repeat
from typing import Any

from ..envknobs import env_int
from .base import Metric

#: (metric name, src_lang, tgt_lang, options) - enough to rebuild the metric in a worker
Spec = tuple[str, str | None, str | None, tuple[tuple[str, Any], ...]]

_WORKER_METRICS: dict[Spec, Metric] = {}


def supports_stats(metric: Metric) -> bool:
    """Whether ``metric`` exposes sacrebleu's statistics (BLEU, chrF, TER)."""
    m = getattr(metric, "_corpus_metric", None)
    return m is not None and all(hasattr(m, a) for a in ("_extract_corpus_statistics", "_aggregate_and_compute",
                                                        "_compute_score_from_stats", "_check_corpus_score_args"))


def metric_spec(name: str, src: str | None, tgt: str | None, options: dict[str, Any] | None) -> Spec:
    return (name, src, tgt, tuple(sorted((options or {}).items())))


def _metric(spec: Spec) -> Metric:
    m = _WORKER_METRICS.get(spec)
    if m is None:
        from . import create_metric

        m = _WORKER_METRICS[spec] = create_metric(spec[0], spec[1], spec[2], **dict(spec[3]))
    return m


def chunk_stats(spec: Spec, hyps: Sequence[str], streams: list[list[str | None]],
                with_segments: bool = True, warn: bool = True) -> tuple[list[list[Any]], list[float], set[int]]:
    """Per-segment statistics, segment scores and the reference counts seen, for one chunk.
    Runs in a worker process (or inline); the metric is built once per process. BLEU and chrF
    are computed by :mod:`.faststats` (identical results, several times faster; chunks of 32+ rows
    are fastest), anything else by sacreBLEU. ``warn=False``: no tokenized-period warning for
    the chunk (see :func:`tokenized_periods`: :func:`score_chunked` warns once for the whole corpus)."""
    metric = _metric(spec)
    corpus_m, sentence_m = metric._corpus_metric, metric._sentence_metric  # type: ignore[attr-defined]
    corpus_m._check_corpus_score_args(hyps, streams)
    if streams and all(len(s) == len(hyps) for s in streams):  # tuple.count runs in C (hot path)
        nrefs = {len(refs) - refs.count(None) for refs in zip(*streams)}
    else:
        nrefs = {sum(1 for s in streams if s[i] is not None) for i in range(len(hyps))}
    fast = _fast(spec, corpus_m, sentence_m) if streams and 0 not in nrefs else None
    if fast is None:  # a configuration faststats does not reproduce: sacreBLEU's own code
        force = getattr(corpus_m, "_force", True)
        try:  # sacreBLEU reads the flag per call; this process's cached metric is restored after
            corpus_m._force = force or not warn
            stats = corpus_m._extract_corpus_statistics(hyps, streams)
        finally:
            corpus_m._force = force
        segs = [float(sentence_m._aggregate_and_compute([st]).score) for st in stats] if with_segments else []
        return stats, segs, nrefs
    stats = fast.stats(hyps, streams, warn)
    if nrefs:  # what sacreBLEU's reference caching leaves on the metric, for its signature
        corpus_m.num_refs = next(iter(nrefs)) if len(nrefs) == 1 else -1
    return stats, list(map(fast.segment_score, stats)) if with_segments else [], nrefs


_FAST: dict[Spec, Any] = {}


def _fast(spec: Spec, corpus_m: Any, sentence_m: Any) -> Any:
    """The exact fast statistics for this metric (:mod:`.faststats`), ``None`` where not covered;
    ``PROMPTWEAVE_FASTSTATS=0`` forces sacreBLEU's own code (for comparisons)."""
    if os.environ.get("PROMPTWEAVE_FASTSTATS", "1") == "0":
        return None
    if spec not in _FAST:
        from .faststats import fast_stats_for

        _FAST[spec] = fast_stats_for(corpus_m, sentence_m)
    return _FAST[spec]


class StatsSum:
    """Running column sums of segment statistics, added in order as ``sum_of_lists`` does."""

    def __init__(self) -> None:
        self.total: list[Any] | None = None
        self.first: list[Any] | None = None
        self.n = 0

    def add(self, st: Sequence[Any]) -> None:
        self.n += 1
        if self.total is None:
            self.first = list(st)
            self.total = [type(st[0])(0.0)] * len(st)
        t = self.total
        for i, v in enumerate(st):
            t[i] += v

    def stats(self) -> list[Any]:
        # sum_of_lists returns a lone segment's list as it is
        return (self.first if self.n == 1 else self.total) or []


def corpus_from_sum(metric: Metric, summed: StatsSum, nrefs: set[int]) -> Any:
    """sacrebleu's corpus score object from summed statistics; sets the reference count that the
    signature shows (``-1``/``var`` when segments have different numbers of references)."""
    corpus_m = metric._corpus_metric  # type: ignore[attr-defined]
    corpus_m.num_refs = next(iter(nrefs)) if len(nrefs) == 1 else -1
    sentence_m = metric._sentence_metric  # type: ignore[attr-defined]
    if sentence_m is not corpus_m:
        sentence_m.num_refs = corpus_m.num_refs
    return corpus_m._compute_score_from_stats(summed.stats())


def make_pool(workers: int | None = None) -> Executor | None:
    """A process pool on the machine's cores (``None`` on one core: chunks are then scored inline).
    ``PROMPTWEAVE_WORKERS`` overrides the count (1 disables the pool)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # a few workers keep a 1M-row finish fed; more would only multiply the forked memory
    n = workers or env_int("PROMPTWEAVE_WORKERS", 0) or min(cores, 8)
    if n <= 1:
        return None
    import multiprocessing

    from ..childproc import worker_init

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method),
                               initializer=worker_init, initargs=(os.getpid(),))


class _Done:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value


def ordered_map(pool: Executor | None, fn: Callable[..., Any], jobs: Iterator[tuple[Any, tuple[Any, ...]]],
                in_flight: int = 4) -> Iterator[tuple[Any, Any]]:
    """``(tag, fn(*args))`` for each ``(tag, args)`` of ``jobs``, in order, with at most
    ``in_flight`` chunks submitted at once, so memory stays bounded whatever the input size."""
    pending: deque[tuple[Any, Future[Any] | _Done]] = deque()
    for tag, args in jobs:
        pending.append((tag, pool.submit(fn, *args) if pool is not None else _Done(fn(*args))))
        while len(pending) >= in_flight:
            t, fut = pending.popleft()
            yield t, fut.result()
    while pending:
        t, fut = pending.popleft()
        yield t, fut.result()


def tokenized_periods(metric: Metric, hyps: Sequence[str]) -> int:
    """How many of ``hyps`` count towards sacreBLEU's tokenized-period warning: those ending in
    ``" ."`` for BLEU without ``force`` (the base class reads ``_force``, which only BLEU sets to
    ``False``), else 0. Counted over the corpus: chunks counted alone would miss a corpus whose
    such lines are spread out, and warn again for each chunk of one where they are not."""
    corpus_m = getattr(metric, "_corpus_metric", None)
    if corpus_m is None or getattr(corpus_m, "_force", True):
        return 0
    return sum(map(str.endswith, hyps, repeat(" .")))


def score_chunked(metric: Metric, spec: Spec, hyps: list[str], references: Any, pool: Executor | None,
                  chunk: int = 5000) -> Any:
    """``metric.score(hyps, references)`` for a sacreBLEU metric, its statistics computed chunk by
    chunk on the pool's workers and summed: the same corpus score, segment scores and signature,
    without holding every segment's statistics at once."""
    from .base import MetricResult
    from .lexical import _reference_streams

    streams = _reference_streams(references, len(hyps))
    if not hyps:
        return metric.score(hyps, references)
    periods = [0]

    def jobs() -> Iterator[tuple[None, tuple[Any, ...]]]:
        for i in range(0, len(hyps), chunk):
            part = hyps[i:i + chunk]
            periods[0] += tokenized_periods(metric, part)  # while the workers score earlier chunks
            yield None, (spec, part, [s[i:i + chunk] for s in streams], True, False)

    total, segments, nrefs = StatsSum(), [], set()
    for _, (stats, segs, seen) in ordered_map(pool, chunk_stats, jobs(), in_flight=4):
        for st in stats:
            total.add(st)
        segments.extend(segs)
        nrefs |= seen
    corpus = corpus_from_sum(metric, total, nrefs)
    if periods[0] >= 100:  # sacreBLEU's warning, once for the corpus
        from .faststats import warn_tokenized

        warn_tokenized()
    return MetricResult(name=metric.name, corpus=float(corpus.score), segments=segments, signature=metric.signature,
                        higher_is_better=metric.higher_is_better,
                        extra={"formatted": corpus.format(),
                               "segment_signature": str(metric._sentence_metric.get_signature())})  # type: ignore[attr-defined]

"""``promptweave eval``: score existing translations (plain text or JSONL) with registered metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import DataError, PromptweaveError
from ..envknobs import env_int
from . import app


#: from this many segments on, sacreBLEU statistics are computed in a process pool
POOL_SEGMENTS = env_int("PROMPTWEAVE_POOL_SEGMENTS", 10000)


@dataclass
class EvalData:
    """Aligned segments: one hypothesis list per system, references per segment, sources."""

    systems: dict[str, list[str]]
    references: list[str] | list[list[str]] | None
    sources: list[str] | None = None
    origin: dict[str, str] = field(default_factory=dict)  # what -> file, for error messages


def read_lines(path: Path) -> list[str]:
    """One segment per line (``\\n``, optional ``\\r``); strict UTF-8; errors name the file."""
    # a FIFO, device or directory is refused without reading it (it could block or never end)
    from ..data.files import read_bytes

    data = read_bytes(path, "text file", limit=1 << 30)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    # only "\n" separates segments: str.splitlines would also split on U+2028, form feeds, etc.
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")] if text else []


def _check_lengths(named: dict[str, list[Any]]) -> None:
    counts = {name: len(v) for name, v in named.items()}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}: {n}" for name, n in counts.items())
        # only "\n" ends a segment (as in sacreBLEU's own reader): a file with bare "\r" line ends
        # reads as few long lines, which this names rather than leave the counts unexplained
        bare_cr = next((name for name, v in named.items() if any("\r" in line for line in v)), None)
        hint = f"; {bare_cr} has carriage returns inside lines (old Mac line ends?): convert them to \\n" if bare_cr else ""
        raise DataError(f"line counts differ ({listing}); every file needs one segment per line, aligned{hint}")


def _unique(name: str, taken: dict[str, Any]) -> str:
    """``name``, or ``name (2)``, ``name (3)``... : the first one not in ``taken``."""
    k = 1
    out = name
    while out in taken:
        k += 1
        out = f"{name} ({k})"
    return out


def read_text_files(hyps: list[Path], refs: list[Path], src: Path | None) -> EvalData:
    """Plain-text inputs; system names are the file names (made unique if they collide)."""
    systems: dict[str, list[str]] = {}
    named: dict[str, list[str]] = {}
    seen: set[Path] = set()
    for p in hyps:
        if p.resolve() in seen:  # a second copy would overwrite the first system's row
            raise PromptweaveError(f"--hyp {p} is given twice; keep one")
        seen.add(p.resolve())
        name = p.name if p.name not in systems else _unique(str(p), systems)
        systems[name] = named[str(p)] = read_lines(p)
    ref_lists = [read_lines(p) for p in refs]
    named.update({str(p): r for p, r in zip(refs, ref_lists)})
    sources = read_lines(src) if src else None
    if src and sources is not None:
        named[str(src)] = sources
    _check_lengths(named)
    if not next(iter(systems.values()), []):
        raise DataError(f"{hyps[0]}: empty file; nothing to score")
    references: list[str] | list[list[str]] | None = None
    if len(ref_lists) == 1:
        references = ref_lists[0]
    elif ref_lists:
        references = [list(r) for r in zip(*ref_lists)]
    return EvalData(systems, references, sources)


def read_jsonl(path: Path, hyp_fields: list[str], ref_field: str | None,
               src_field: str | None) -> EvalData:
    """One JSON object per segment; a reference field may hold a list (several references)."""
    from ..data import iter_jsonl

    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(f"{path}: no rows; nothing to score")

    def column(name: str, required: bool, allow_list: bool = False) -> list[Any] | None:
        if not required and not any(name in row for _, row in rows):
            return None
        out = []
        for lineno, row in rows:
            if name not in row or row[name] is None:
                raise DataError(f"{path}:{lineno}: no field '{name}'; fields: {', '.join(row)} "
                                f"(choose the field with --hyp-field/--ref-field/--src-field)")
            v = row[name]
            if allow_list and v == []:
                raise DataError(f"{path}:{lineno}: field '{name}' is an empty list; give at least one reference")
            ok = isinstance(v, str) or (allow_list and isinstance(v, list) and all(isinstance(x, str) for x in v))
            if not ok:
                raise DataError(f"{path}:{lineno}: field '{name}' must be a string"
                                + (" or a list of strings" if allow_list else ""))
            out.append(v)
        return out

    twice = next((f for i, f in enumerate(hyp_fields) if f in hyp_fields[:i]), None)
    if twice is not None:  # one system would silently replace the other
        raise PromptweaveError(f"--hyp-field {twice} is given twice; keep one")
    single = len(hyp_fields) == 1
    systems = {(path.stem if single else f): column(f, True) or [] for f in hyp_fields}
    refs = column(ref_field, False, allow_list=True) if ref_field else None
    sources = column(src_field, False) if src_field else None
    return EvalData(systems, refs, sources)


def parse_metric_options(items: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``metric.key=value`` strings -> ``{metric: {key: value}}``; values parsed as YAML scalars."""
    from ..errors import ConfigError
    from ..yamlio import load_value

    options: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in items:
        key, eq, raw = item.partition("=")
        metric, dot, opt = key.partition(".")
        if not eq or not dot or not opt:
            raise PromptweaveError(f"--option '{item[:80]}': expected metric.key=value, e.g. bleu.tokenize=intl")
        if metric not in options:
            raise PromptweaveError(f"--option '{item[:80]}': metric '{metric}' is not in --metrics ({', '.join(names)})")
        if opt in options[metric]:
            raise PromptweaveError(f"--option {metric}.{opt} is given twice; keep one")
        try:
            options[metric][opt] = load_value(raw, f"--option {metric}.{opt}")
        except ConfigError as exc:
            raise PromptweaveError(str(exc).removeprefix("<config>: ")) from None
    return options


def score_systems(data: EvalData, metric_names: list[str], src_lang: str | None, tgt_lang: str | None,
                  options: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Score every system with every metric; returns one result dict per (system, metric)."""
    from ..evaluators import create_metric, metrics

    for name in metric_names:
        if name not in metrics:
            from ..registry import suggest

            raise PromptweaveError(f"unknown metric '{name}'{suggest(name, metrics.names())}; "
                                   f"known: {', '.join(metrics.names())}")
    built = []
    for name in metric_names:  # every metric built and checked before the first one scores
        metric = create_metric(name, src_lang, tgt_lang, **options.get(name, {}))
        metric.check()
        if metric.needs_reference and data.references is None:
            raise PromptweaveError(f"metric '{name}' needs references; pass --ref FILE (or --ref-field)")
        if metric.needs_source and data.sources is None:
            raise PromptweaveError(f"metric '{name}' needs sources; pass --src FILE (or --src-field)")
        built.append(metric)
    results = []
    from ..evaluators.segstats import make_pool, metric_spec, score_chunked, supports_stats

    big = max((len(h) for h in data.systems.values()), default=0) >= POOL_SEGMENTS
    pool = make_pool() if big and any(supports_stats(m) for m in built) else None
    try:
        for name, metric in zip(metric_names, built):
            for system, hyps in data.systems.items():
                if pool is not None and supports_stats(metric):
                    # many segments: statistics on every core, summed in order (identical scores)
                    spec = metric_spec(name, src_lang, tgt_lang, options.get(name, {}))
                    res = score_chunked(metric, spec, hyps, data.references, pool)
                else:
                    res = metric.score(hyps, data.references, data.sources)  # type: ignore[arg-type]
                results.append({"system": system, "metric": res.name, "score": res.corpus,
                                "signature": res.signature, "higher_is_better": res.higher_is_better,
                                "segments": res.segments})
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


def _split_lp(lp: str | None) -> tuple[str | None, str | None]:
    """``zh-en`` -> ``("zh", "en")``; tags with subtags use a colon: ``zh-Hant:en``. Both sides
    must be BCP-47 codes (the target picks the BLEU tokenizer)."""
    from ..languages import LanguageError, normalize

    if not lp:
        return None, None
    src, sep, tgt = lp.partition(":") if ":" in lp else lp.partition("-")
    if not sep or not src or not tgt:
        raise PromptweaveError(f"--lp '{lp}': expected source-target, e.g. zh-en (or zh-Hant:en)")
    try:
        return normalize(src), normalize(tgt)
    except LanguageError as exc:
        raise PromptweaveError(f"--lp '{lp}': {exc}") from None


@app.command("eval")
def evaluate(
    hyp: Optional[list[Path]] = typer.Option(None, "--hyp", help="system output, one segment a line (repeat for several systems)"),
    ref: Optional[list[Path]] = typer.Option(None, "--ref", help="reference file (repeat for several references)"),
    src: Optional[Path] = typer.Option(None, "--src", help="source file (for source-based metrics)"),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="JSONL input, one object per segment, instead of text files"),
    hyp_field: Optional[list[str]] = typer.Option(None, "--hyp-field", help="JSONL hypothesis field (repeat for several systems) [default: hypothesis]"),
    ref_field: str = typer.Option("reference", "--ref-field", help="JSONL reference field (a string or a list of strings)"),
    src_field: str = typer.Option("source", "--src-field", help="JSONL source field"),
    lp: Optional[str] = typer.Option(None, "--lp", help="language pair, e.g. zh-en or zh-Hant:en; the target picks tokenizer defaults"),
    metric_list: str = typer.Option("bleu,chrf,ter", "--metrics", help="comma-separated metric names"),
    option: Optional[list[str]] = typer.Option(None, "--option", "-o", help="metric option metric.key=value, e.g. bleu.tokenize=intl, chrf.word_order=2 (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    segments: bool = typer.Option(False, "--segments", help="include segment scores in the JSON output"),
    paired_bs: bool = typer.Option(False, "--paired-bs", help="paired bootstrap test of each --hyp against the first (as sacrebleu)"),
    paired_ar: bool = typer.Option(False, "--paired-ar", help="paired approximate randomization test against the first --hyp"),
) -> None:
    """Score existing translations against references with BLEU, chrF, TER or any registered metric."""
    if jsonl is not None and (hyp or ref or src):
        raise PromptweaveError("give either --jsonl or --hyp/--ref/--src text files, not both")
    if jsonl is None and not hyp:
        raise PromptweaveError("nothing to score: pass --hyp FILE (with --ref FILE) or --jsonl FILE")
    src_lang, tgt_lang = _split_lp(lp)
    names = [m.strip() for m in metric_list.split(",") if m.strip()]
    if not names:
        raise PromptweaveError("--metrics is empty; e.g. --metrics bleu,chrf,ter")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:  # it would be scored twice and listed twice; options could not tell them apart
        raise PromptweaveError(f"--metrics: '{twice}' is given twice; keep one")
    if segments and not as_json:
        raise PromptweaveError("--segments adds segment scores to the JSON output; add --json")
    options = parse_metric_options(list(option or []), names)
    if jsonl is not None:
        data = read_jsonl(jsonl, list(hyp_field or ["hypothesis"]), ref_field or None, src_field or None)
    else:
        data = read_text_files(list(hyp or []), list(ref or []), src)
    results = score_systems(data, names, src_lang, tgt_lang, options)
    n_segments = len(next(iter(data.systems.values())))
    if paired_bs or paired_ar:
        from ..report.compare import eval_significance

        eval_significance(data, results, src_lang, tgt_lang, options, "ar" if paired_ar else "bs", as_json)
        return
    if as_json:
        out = [{k: v for k, v in r.items() if segments or k != "segments"} for r in results]
        typer.echo(json.dumps({"lp": lp, "segments": n_segments, "results": out}, indent=2, ensure_ascii=False))
        return
    _print_table(results, lp, n_segments)


def _print_table(results: list[dict[str, Any]], lp: str | None, n_segments: int) -> None:
    from rich.table import Table

    from .. import terminal

    table = Table("system", "metric", "score", title=f"{lp or ''} ({n_segments} segments)".strip())
    signatures: dict[str, str] = {}
    for r in results:
        arrow = "" if r["higher_is_better"] else " ↓"
        table.add_row(r["system"], r["metric"] + arrow, "-" if r["score"] is None else f"{r['score']:.2f}")
        signatures.setdefault(r["metric"], r["signature"])
    console = terminal.console(wide_when_piped=True)  # piped: long system names stay whole
    console.print(table)
    for metric, sig in signatures.items():
        console.print(f"{metric}: {sig}", soft_wrap=True)

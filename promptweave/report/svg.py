"""Small inline-SVG charts drawn in Python: no JavaScript library, nothing fetched.

Every label goes through :func:`esc`; system names and categories come from data files and
model replies, so they are never trusted as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5",
           "#9c6b4e", "#9498a0"]
SEVERITY_COLORS = {"critical": "#b2182b", "major": "#ef8a62", "minor": "#fddbc7", "neutral": "#d1e5f0"}


def esc(text: object, cap: int = 80) -> str:
    s = str(text)
    return escape(s if len(s) <= cap else s[: cap - 1] + "…", quote=True)


def _nice(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Axis bounds and ~5 round ticks covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    lo, hi = max(lo, -1e307), min(hi, 1e307)  # hi - lo stays a finite float
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        # one value (or values equal to a float's precision): a range around it, relative to its
        # size; a fixed +-0.5 vanished next to 1e19 (log10(0): the whole page failed)
        pad = 0.5 * max(1.0, abs(lo) * 1e-3, abs(hi) * 1e-3)
        lo, hi = lo - pad, hi + pad
    step = 10 ** math.floor(math.log10((hi - lo) / 5))
    for m in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    a, b = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [a + i * step for i in range(int(round((b - a) / step)) + 1)]
    return a, b, ticks


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{esc(title, 200)}</title>' + "".join(body) + "</svg>")


def _x_axis(x0: int, x1: int, y: int, lo: float, hi: float, ticks: list[float], label: str) -> list[str]:
    out = [f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" class="axis"/>']
    for t in ticks:
        x = x0 + (t - lo) / (hi - lo) * (x1 - x0)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" class="axis"/>'
                   f'<text x="{x:.1f}" y="{y + 16}" class="tick" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{y + 32}" class="label" text-anchor="middle">{esc(label)}</text>')
    return out


def _y_axis(ticks: Sequence[float], lo: float, hi: float, left: float, right: float, top: float,
            bottom: float, label: str) -> list[str]:
    """Horizontal grid lines with their tick values, and the rotated y-axis label."""
    out = []
    for t in ticks:
        y = bottom - (t - lo) / (hi - lo) * (bottom - top)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="14" y="{(top + bottom) / 2:.0f}" class="label" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + bottom) / 2:.0f})">{esc(label)}</text>')
    return out


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_vals) - 1)
    i = int(pos)
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (pos - i)


def boxplots(title: str, data: dict[str, list[float]]) -> str:
    """Distribution of segment scores per system: box (quartiles), whiskers (min/max), mean dot."""
    rows = [(name, sorted(v)) for name, v in data.items() if v]
    if not rows:
        return ""
    allv = [x for _, v in rows for x in v]
    lo, hi, ticks = _nice(min(allv), max(allv))
    left, right, top, rh = 170, 620, 24, 26
    h = top + rh * len(rows) + 44
    body = [f'<text x="{left}" y="15" class="ctitle">{esc(title, 120)}</text>']
    for k, (name, v) in enumerate(rows):
        def X(val: float) -> float:
            return left + (val - lo) / (hi - lo) * (right - left)
        y = top + k * rh + rh / 2
        q1, med, q3 = (_quantile(v, q) for q in (0.25, 0.5, 0.75))
        mean = sum(v) / len(v)
        color = PALETTE[k % len(PALETTE)]
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(name, 26)}</text>'
                    f'<line x1="{X(v[0]):.1f}" y1="{y:.1f}" x2="{X(v[-1]):.1f}" y2="{y:.1f}" stroke="{color}"/>'
                    f'<rect x="{X(q1):.1f}" y="{y - 8:.1f}" width="{max(1.0, X(q3) - X(q1)):.1f}" height="16" '
                    f'fill="{color}" fill-opacity="0.35" stroke="{color}"><title>{esc(name, 60)}: n={len(v)}, '
                    f'q1={_fmt(q1)}, median={_fmt(med)}, q3={_fmt(q3)}, mean={_fmt(mean)}</title></rect>'
                    f'<line x1="{X(med):.1f}" y1="{y - 8:.1f}" x2="{X(med):.1f}" y2="{y + 8:.1f}" stroke="#222" stroke-width="2"/>'
                    f'<circle cx="{X(mean):.1f}" cy="{y:.1f}" r="3" fill="#222"/>')
    body += _x_axis(left, right, top + rh * len(rows) + 4, lo, hi, ticks, "segment score")
    return _svg(640, h, body, title)


def ranking(title: str, rows: list[tuple[str, float, float | None, float | None]], higher_is_better: bool) -> str:
    """Systems ranked by score with 95% intervals: ``(name, score, low, high)``."""
    rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
    if not rows:
        return ""
    rows.sort(key=lambda r: -r[1] if higher_is_better else r[1])
    vals = [v for r in rows for v in r[1:] if v is not None]
    lo, hi, ticks = _nice(min(vals), max(vals))
    left, right, top, rh = 170, 620, 24, 24
    body = [f'<text x="{left}" y="15" class="ctitle">{esc(title, 120)}</text>']
    for k, (name, score, a, b) in enumerate(rows):
        def X(val: float) -> float:
            return left + (val - lo) / (hi - lo) * (right - left)
        y = top + k * rh + rh / 2
        if a is not None and b is not None:
            body.append(f'<line x1="{X(a):.1f}" y1="{y:.1f}" x2="{X(b):.1f}" y2="{y:.1f}" stroke="#555" stroke-width="2"/>')
        ci = f" [{_fmt(a)}, {_fmt(b)}]" if a is not None and b is not None else ""
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{k + 1}. {esc(name, 24)}</text>'
                    f'<circle cx="{X(score):.1f}" cy="{y:.1f}" r="5" fill="{PALETTE[k % len(PALETTE)]}">'
                    f'<title>{esc(name, 60)}: {_fmt(score)}{ci}</title></circle>')
    body += _x_axis(left, right, top + rh * len(rows) + 4, lo, hi, ticks, "score (95% interval)")
    return _svg(640, top + rh * len(rows) + 44, body, title)


def scatter(title: str, points: list[tuple[float, float, int]], x_label: str, y_label: str,
            legend: Sequence[str] = ()) -> str:
    """Segment-level scatter (``x``, ``y``, color index), e.g. judge score vs human MQM."""
    if not points:
        return ""
    xlo, xhi, xt = _nice(min(p[0] for p in points), max(p[0] for p in points))
    ylo, yhi, yt = _nice(min(p[1] for p in points), max(p[1] for p in points))
    left, right, top, bottom = 60, 440, 24, 284
    body = [f'<text x="{left}" y="15" class="ctitle">{esc(title, 120)}</text>']
    body += _y_axis(yt, ylo, yhi, left, right, top, bottom, y_label)
    for x, y, c in points:
        px = left + (x - xlo) / (xhi - xlo) * (right - left)
        py = bottom - (y - ylo) / (yhi - ylo) * (bottom - top)
        body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{PALETTE[c % len(PALETTE)]}" fill-opacity="0.6"/>')
    body += _x_axis(left, right, bottom, xlo, xhi, xt, x_label)
    for k, name in enumerate(legend):
        body.append(f'<rect x="460" y="{30 + 16 * k}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                    f'<text x="476" y="{39 + 16 * k}" class="tick">{esc(name, 22)}</text>')
    return _svg(640, bottom + 44, body, title)


def stacked_bars(title: str, data: dict[str, dict[str, float]], order: Sequence[str],
                 colors: dict[str, str] | None = None, x_label: str = "errors per segment") -> str:
    """Horizontal stacked bars: per system, one segment per key of ``order`` (e.g. severities)."""
    if not data:
        return ""
    colors = colors or {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(order)}
    total = max((sum(v.values()) for v in data.values()), default=0.0) or 1.0
    lo, hi, ticks = _nice(0.0, total)
    left, right, top, rh = 170, 560, 24, 24
    body = [f'<text x="{left}" y="15" class="ctitle">{esc(title, 120)}</text>']
    for k, (name, parts) in enumerate(data.items()):
        y = top + k * rh + 4
        x = float(left)
        body.append(f'<text x="{left - 6}" y="{y + 12}" class="tick" text-anchor="end">{esc(name, 26)}</text>')
        for key in order:
            w = parts.get(key, 0.0) / (hi - lo) * (right - left)
            if w > 0:
                body.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" fill="{colors.get(key, "#999")}" '
                            f'stroke="#fff"><title>{esc(name, 60)} {esc(key, 60)}: {_fmt(parts[key])}</title></rect>')
                x += w
    body += _x_axis(left, right, top + rh * len(data) + 4, lo, hi, ticks, x_label)
    for i, key in enumerate(order):
        body.append(f'<rect x="575" y="{30 + 16 * i}" width="10" height="10" fill="{colors.get(key, "#999")}"/>'
                    f'<text x="590" y="{39 + 16 * i}" class="tick">{esc(key, 14)}</text>')
    return _svg(660, max(top + rh * len(data) + 44, 40 + 16 * len(order)), body, title)


def lines(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> str:
    """Line chart of several series over the run (e.g. cumulative tokens by row)."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [p[0] for v in series.values() for p in v]
    ys = [p[1] for v in series.values() for p in v]
    xlo, xhi, xt = _nice(min(xs), max(xs))
    ylo, yhi, yt = _nice(min(0.0, min(ys)), max(ys))
    left, right, top, bottom = 70, 440, 24, 204
    body = [f'<text x="{left}" y="15" class="ctitle">{esc(title, 120)}</text>']
    body += _y_axis(yt, ylo, yhi, left, right, top, bottom, y_label)
    for k, (name, pts) in enumerate(series.items()):
        step = max(1, len(pts) // 400)  # at most ~400 vertices per line
        d = " ".join(f"{left + (x - xlo) / (xhi - xlo) * (right - left):.1f},"
                     f"{bottom - (y - ylo) / (yhi - ylo) * (bottom - top):.1f}" for x, y in pts[::step] + pts[-1:])
        body.append(f'<polyline points="{d}" fill="none" stroke="{PALETTE[k % len(PALETTE)]}" stroke-width="1.5"/>'
                    f'<rect x="460" y="{30 + 16 * k}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                    f'<text x="476" y="{39 + 16 * k}" class="tick">{esc(name, 22)}</text>')
    body += _x_axis(left, right, bottom, xlo, xhi, xt, x_label)
    return _svg(640, bottom + 44, body, title)

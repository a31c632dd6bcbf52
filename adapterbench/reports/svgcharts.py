"""Charts as inline SVG for ``report.html``: self-contained, offline, and with a hover label on every point.

The Pareto chart (metric against parameters as deployed, log x) draws one point per configuration (a variant
with evaluation points at its default point, as the tables show it). Every point carries its full label as an SVG
``<title>`` (the browser shows it on hover); a short visible label sits next to the point where
:func:`adapterbench.reports.labels.place_labels` finds a free place, and is left out where it would overlap
another label, a marker or an error bar, so that no two visible labels ever overlap (the hover label remains).
An interval the tables call uninformative (:func:`adapterbench.reports.model.uninformative`) is not drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from adapterbench.reports.aggregate import Row, Stat, cost_value
from adapterbench.reports.labels import boxes_overlap, place_labels
from adapterbench.reports.units import fmt_count, fmt_estimate

WIDTH, HEIGHT = 640, 330
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 16, 48
FONT = 11  # px, visible labels
CHAR = 0.6 * FONT  # width of one character, generous for a proportional font


def _ticks_log(lo: float, hi: float) -> list[float]:
    return [10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n or 1.0
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= step), default=step)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _segment_boxes(line: Sequence[tuple[float, float]], step: float = 6.0) -> list[tuple[float, float, float, float]]:
    """Small boxes along a polyline (pixels), so that a label placed clear of them does not sit on the line."""
    boxes = []
    for (x0, y0), (x1, y1) in zip(line, line[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for k in range(n + 1):
            x, y = x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n
            boxes.append((x - 2, y - 2, x + 2, y + 2))
    return boxes


def pareto_svg(rows: Sequence[Row], title: str, greater_is_better: bool,
               uninformative: Callable[[Stat | None], bool], pareto: set[int]) -> str | None:
    """The chart as an ``<svg>`` element, or None with fewer than two rows that have a cost and a value.
    ``pareto``: indices into ``rows`` of the Pareto set (drawn with a dark edge and joined by a dashed line)."""
    points = [(i, row, cv) for i, row in enumerate(rows) if (cv := cost_value(row)) is not None and cv[0] > 0]
    if len(points) < 2:
        return None
    bars = {}
    for i, row, (_, value) in points:
        s = row.stats.get("primary")
        bars[i] = (s.interval if s and s.interval and not uninformative(s) else (value, value))
    costs = [cv[0] for _, _, cv in points]
    x_lo, x_hi = math.log10(min(costs)) - 0.3, math.log10(max(costs)) + 0.3
    values = [v for lo_hi in bars.values() for v in lo_hi]
    pad = (max(values) - min(values)) * 0.08 or 0.01
    y_lo, y_hi = min(values) - pad, max(values) + pad
    plot = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)

    def sx(cost: float) -> float:
        return plot[0] + (math.log10(cost) - x_lo) / (x_hi - x_lo) * (plot[2] - plot[0])

    def sy(value: float) -> float:
        return plot[3] - (value - y_lo) / (y_hi - y_lo) * (plot[3] - plot[1])

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{plot[0]}" y="{plot[1]}" width="{plot[2] - plot[0]}" height="{plot[3] - plot[1]}" '
             'fill="#fff" stroke="#e5e7eb"/>']
    for t in _ticks_log(10 ** x_lo, 10 ** x_hi):
        if 10 ** x_lo <= t <= 10 ** x_hi:
            x = sx(t)
            parts.append(f'<line x1="{x:.1f}" y1="{plot[3]}" x2="{x:.1f}" y2="{plot[3] + 4}" stroke="#6b7280"/>'
                         f'<text class="tick" x="{x:.1f}" y="{plot[3] + 16}" text-anchor="middle" '
                         f'font-size="10">{escape(fmt_count(t))}</text>')
    for t in _nice_ticks(y_lo, y_hi):
        y = sy(t)
        parts.append(f'<line x1="{plot[0] - 4}" y1="{y:.1f}" x2="{plot[2]}" y2="{y:.1f}" stroke="#f1f5f9"/>'
                     f'<text class="tick" x="{plot[0] - 6}" y="{y + 3:.1f}" text-anchor="end" '
                     f'font-size="10">{t:.3g}</text>')
    parts.append(f'<text x="{(plot[0] + plot[2]) / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">'
                 "parameters as deployed (adapter kept + task head, log scale)</text>")
    front = sorted((cv for i, _, cv in points if i in pareto), key=lambda cv: cv[0])
    anchors, obstacles = [], []
    if len(front) > 1:
        path = " ".join(f"{'M' if k == 0 else 'L'}{sx(c):.1f},{sy(v):.1f}" for k, (c, v) in enumerate(front))
        parts.append(f'<path d="{path}" fill="none" stroke="#111827" stroke-dasharray="5,4"/>')
        obstacles += _segment_boxes([(sx(c), sy(v)) for c, v in front])  # names stay off the frontier too
    for i, row, (cost, value) in points:
        x, y = sx(cost), sy(value)
        lo, hi = bars[i]
        s = row.stats.get("primary")
        words = (f"{row.label}: {fmt_estimate(value, s.std if s else None, s.interval if s else None)}"
                 f"{' (interval uninformative)' if uninformative(s) else ''}; {fmt_count(cost)} parameters"
                 f"{'; Pareto set' if i in pareto else ''}")
        bar = (f'<line x1="{x:.1f}" y1="{sy(lo):.1f}" x2="{x:.1f}" y2="{sy(hi):.1f}" stroke="#6b7280"/>'
               if hi > lo else "")
        edge = "#111827" if i in pareto else "#ffffff"
        parts.append(f'<g class="point"><title>{escape(words)}</title>{bar}<circle cx="{x:.1f}" cy="{y:.1f}" '
                     f'r="5.5" fill="#2563eb" stroke="{edge}" stroke-width="1.6"/></g>')
        anchors.append((x, y))
        if hi > lo:
            obstacles.append((x - 1.5, sy(hi), x + 1.5, sy(lo)))
    names = [row.label for _, row, _ in points]
    sizes = [(CHAR * len(n) + 4, FONT * 1.3) for n in names]
    offsets = place_labels(anchors, sizes, plot, marker=6.0, obstacles=obstacles)
    placed: list[tuple[float, float, float, float]] = []
    markers = [(x - 6, y - 6, x + 6, y + 6) for x, y in anchors] + obstacles
    for (x, y), (dx, dy), (w, h), name in zip(anchors, offsets, sizes, names):
        box = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
        inside = plot[0] <= box[0] and box[2] <= plot[2] and plot[1] <= box[1] and box[3] <= plot[3]
        if not inside or any(boxes_overlap(box, o) for o in [*placed, *markers]):
            continue  # no free place: the hover label alone names this point
        placed.append(box)
        parts.append(f'<text class="label" x="{x + dx:.1f}" y="{y + dy + FONT * 0.35:.1f}" text-anchor="middle" '
                     f'font-size="{FONT}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)

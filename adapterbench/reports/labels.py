"""Chart labels that sit next to their own point without overlapping: a greedy placement in display pixels.

:func:`place_labels` is pure (boxes in, offsets out; the tests check that no two labels overlap and none covers
a marker); :func:`numbered_labels` measures a drawn matplotlib axes and annotates it with the placed labels.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
# Directions tried around a point, right first (the reading direction), then the diagonals, above, below, left.
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, -1), (-1, 0))


def boxes_overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 bounds: Box, marker: float = 6.0, obstacles: Sequence[Box] = (),
                 radii: Sequence[float] = (3.0, 9.0, 17.0, 28.0, 42.0, 60.0)) -> list[tuple[float, float]]:
    """Centre offsets (dx, dy), in the anchors' units (pixels), of one label per anchor: each label's box
    ``sizes[i]`` sits next to its anchor without covering another label, any marker (a square of half-side
    ``marker`` around every anchor), any of ``obstacles`` (error bars, lines) or leaving ``bounds``.

    Greedy, most crowded anchors first: for growing gaps ``radii``, the first of :data:`_DIRECTIONS` whose box
    is free; where none is, the candidate that overlaps the fewest boxes (then the nearest).
    """
    markers = [(x - marker, y - marker, x + marker, y + marker) for x, y in anchors] + list(obstacles)
    crowd = [sum(abs(x - u) < 60 and abs(y - v) < 40 for u, v in anchors) for x, y in anchors]
    placed: dict[int, tuple[float, float, float, float]] = {}
    offsets: list[tuple[float, float]] = [(0.0, 0.0)] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda k: (-crowd[k], k)):
        (x, y), (w, h) = anchors[i], sizes[i]
        best = None
        for r in radii:
            for ux, uy in _DIRECTIONS:
                dx, dy = ux * (marker + r + w / 2), uy * (marker + r + h / 2)
                box = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
                inside = bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
                hits = sum(boxes_overlap(box, o) for o in [*placed.values(), *markers]) + (0 if inside else 100)
                if best is None or hits < best[0]:
                    best = (hits, (dx, dy), box)
                if hits == 0:
                    break
            if best[0] == 0:
                break
        placed[i] = best[2]
        offsets[i] = best[1]
    return offsets


def _segment_boxes(ax, lines: Sequence[tuple[tuple[float, float], tuple[float, float]]], width: float) -> list[Box]:
    """Display-pixel boxes around straight segments given in data coordinates (vertical or horizontal ones)."""
    boxes = []
    for a, b in lines:
        (x0, y0), (x1, y1) = ax.transData.transform(a), ax.transData.transform(b)
        boxes.append((min(x0, x1) - width, min(y0, y1) - width, max(x0, x1) + width, max(y0, y1) + width))
    return boxes


def numbered_labels(ax, fig, spots: Sequence[tuple[float, float]], numbers: Sequence[str], fontsize: float,
                     segments: Sequence[tuple[tuple[float, float], tuple[float, float]]] = ()) -> None:
    """Each number next to its own spot (:func:`place_labels` in display pixels), clear of the ``segments``
    (error bars, the frontier), a leader line when it had to move away; the layout is frozen first so the pixels
    stay where they were measured."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
    anchors = [tuple(ax.transData.transform(spot)) for spot in spots]
    px = fig.dpi / 72.0
    sizes = [((0.62 * len(n) + 0.5) * fontsize * px, 1.25 * fontsize * px) for n in numbers]
    box = ax.get_window_extent()
    offsets = place_labels(anchors, sizes, (box.x0, box.y0, box.x1, box.y1), marker=5.5 * px,
                           obstacles=_segment_boxes(ax, segments, 1.5 * px))
    for spot, number, (dx, dy), (w, h) in zip(spots, numbers, offsets, sizes):
        far = abs(dx) > w / 2 + 12 * px or abs(dy) > h / 2 + 12 * px
        ax.annotate(number, spot, xytext=(dx / px, dy / px), textcoords="offset points", ha="center", va="center",
                    fontsize=fontsize, fontweight="bold", color="#111827", zorder=5,
                    arrowprops={"arrowstyle": "-", "color": "#9ca3af", "lw": 0.7, "shrinkA": 1, "shrinkB": 4}
                    if far else None)

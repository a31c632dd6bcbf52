"""Numbers in human units, for tables, chart labels and the one-line run summary. Every formatter maps ``None``
(and NaN) to an em dash. Which formatter a measurement uses is its ``kind`` in :data:`adapterbench.schema.MEASURES`.
"""

from __future__ import annotations

import math
from typing import Any

from adapterbench import schema

DASH = "—"


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_count(n: float | None) -> str:
    """Parameter counts in SI units: 295 -> "295", 295_000 -> "295 k", 1_234_567 -> "1.23 M"."""
    if _missing(n):
        return DASH
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def fmt_bytes(b: float | None) -> str:
    """Bytes in binary units: 1536 -> "1.5 KiB". Negative values (a CPU RSS delta can be) keep their sign."""
    if _missing(b):
        return DASH
    sign, b = ("-" if b < 0 else ""), abs(b)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{sign}{b:.0f} {unit}" if unit == "B" else f"{sign}{b:.3g} {unit}"
        b /= 1024
    raise AssertionError("unreachable")


def bytes_unit(max_bytes: float) -> tuple[float, str]:
    """The (divisor, unit) that suits an axis whose largest value is ``max_bytes``."""
    for div, unit in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if abs(max_bytes) >= div:
            return div, unit
    return 1.0, "B"


def fmt_seconds(s: float | None) -> str:
    """Durations: 12.3 -> "12.3 s", 245 -> "4 min 05 s", 7300 -> "2 h 01 min"."""
    if _missing(s):
        return DASH
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        m, sec = divmod(round(s), 60)
        return f"{m} min {sec:02d} s"
    h, rem = divmod(round(s), 3600)
    return f"{h} h {rem // 60:02d} min"


def fmt_rate(x: float | None) -> str:
    """Throughput in samples per second: 1234.5 -> "1,234", 12.34 -> "12.3"."""
    if _missing(x):
        return DASH
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def fmt_ratio(x: float | None) -> str:
    """A ratio to a reference: 1.034 -> "1.03×"."""
    return DASH if _missing(x) else f"{x:.2f}×"


def fmt_percent(x: float | None) -> str:
    """A percentage already scaled to 0..100: 0.2734 -> "0.273 %"."""
    return DASH if _missing(x) else f"{x:.3g} %"


def fmt_metric(mean: float | None, std: float | None = None) -> str:
    """A task metric, with its seed standard deviation when there is one: "0.9123 ± 0.0041"."""
    if _missing(mean):
        return DASH
    return f"{mean:.4f}" if _missing(std) else f"{mean:.4f} ± {std:.4f}"


def supported_decimals(spread: float | None, most: int = 4) -> int:
    """Decimals a number can honestly show when its uncertainty is ``spread`` (an interval's half-width or a
    std): two significant digits of the spread (0.021 -> 3 decimals, 0.3 -> 2), at most ``most``; ``most``
    without a spread."""
    if _missing(spread) or spread <= 0:
        return most
    return max(0, min(most, 1 - math.floor(math.log10(spread))))


def fmt_estimate(mean: float | None, std: float | None = None, interval: tuple[float, float] | None = None,
                 mark: str = "") -> str:
    """A metric with its std and interval, every number rounded to what the interval supports
    (:func:`supported_decimals` of its half-width, else of the std): "0.91 ± 0.02 [0.87, 0.95]ˢ"."""
    if _missing(mean):
        return DASH
    half = (interval[1] - interval[0]) / 2 if interval else std
    d = supported_decimals(half)
    text = f"{mean:.{d}f}" + ("" if _missing(std) else f" ± {std:.{d}f}")
    return text + (f" [{interval[0]:.{d}f}, {interval[1]:.{d}f}]{mark}" if interval else "")


def fmt_delta(x: float | None, digits: int = 4) -> str:
    """A signed difference with a real minus sign: -0.0312 -> "−0.0312"."""
    if _missing(x):
        return DASH
    return f"{x:+.{digits}f}".replace("-", "−")


def fmt_change(ratio: float | None) -> str:
    """A ratio as a signed percent change: 0.62 -> "−38.0 %"."""
    if _missing(ratio):
        return DASH
    return f"{(ratio - 1) * 100:+.1f} %".replace("-", "−")


def fmt_number(x: float | None) -> str:
    """Any other number, three significant digits: 0.000123 -> "0.000123", 1234.5 -> "1.23e+03"."""
    return DASH if _missing(x) else f"{x:.3g}"


def fmt_bool(x: bool | None) -> str:
    return DASH if x is None else ("yes" if x else "no")


def fmt_text(x: Any) -> str:
    return DASH if x is None else str(x)


def fmt_measure(key: str, value: Any) -> str:
    """``value`` of measurement ``key`` in the unit the schema gives it."""
    return FORMATTERS[schema.measure(key).kind](value)


def point_label(point: Any, hints: schema.ReportHints | None = None) -> str:
    """The label of an evaluation point, as the variant declared it (``hints["points"]["label"]``, e.g.
    ``"r={point}"``): ``None`` -> "" (the model as trained); ``{"r": 4}`` -> "r=4"; else the template, or the
    value itself."""
    if point is None:
        return ""
    if isinstance(point, dict):
        return ",".join(f"{k}={_short(v)}" for k, v in point.items())
    template = ((hints or {}).get("points") or {}).get("label") or "{point}"
    return template.replace("{point}", _short(point))


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def summary_line(record: schema.Record) -> str:
    """One line per finished run: the primary metric (at every evaluation point), then the summary measures."""
    if record.get("status") != "ok":
        return f"{str(record.get('status')).upper()}: {(record.get('error') or {}).get('message', '')}"
    key, hints = schema.primary_key(record), schema.report_hints(record)
    metric = f"{key}={fmt_metric(schema.primary_value(record))}"
    points = [p for p in schema.evaluations(record) if p.get("point") is not None]
    if points:
        metric += " (" + ", ".join(f"{point_label(p['point'], hints)}: {fmt_metric(p.get(key))}"
                                   for p in points) + ")"
    measurements = record.get("measurements", {})
    learned = schema.learned_detail(record)  # "learned: ..." or "did not learn: ..."
    costs = [f"{m.title} {fmt_measure(m.key, measurements.get(m.key))}" for m in schema.SUMMARY_MEASURES]
    return " | ".join([f"ok: {metric}", *([learned] if learned else []), *costs])


FORMATTERS = {
    "count": fmt_count,
    "bytes": fmt_bytes,
    "seconds": fmt_seconds,
    "rate": fmt_rate,
    "ratio": fmt_ratio,
    "percent": fmt_percent,
    "metric": fmt_metric,
    "number": fmt_number,
    "bool": fmt_bool,
    "text": fmt_text,
}

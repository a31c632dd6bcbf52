"""Report charts (matplotlib, Agg canvas; no pyplot global state, so it is safe in tests and threads).

Each ``*_chart`` function draws one PNG and returns its path, or ``None`` when there is nothing to draw or
compare (a single configuration, no rank map, a single date, ...). What a variant wants charted comes from its
record (``variant_info["report"]``, :class:`adapterbench.schema.ReportHints`): the axis of its evaluation points
and the rank map to draw, so nothing here knows a variant or a tensor name. The data preparation is in small pure
functions (:func:`rank_grid`, :func:`mean_rank_map`, :func:`trend_series`) that tests call directly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from adapterbench.reports.aggregate import GroupTable, Row, cost_value
from adapterbench.reports.collect import config_ids, label_configs
from adapterbench.reports.labels import numbered_labels
from adapterbench.reports.units import bytes_unit
from adapterbench.results import parse_module_name
from adapterbench.schema import PEAK_MEMORY, TRAIN_SPS

DPI = 120


def _figure(width: float = 7.5, height: float = 4.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax) -> None:
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def palette(names: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per variant name, so a variant has the same colour in every chart of a report."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(sorted(set(names)))}


# ---- Pareto: metric against parameters as deployed --------------------------------------------------------
def uninformative(s: Any) -> bool:
    """An interval (of a :class:`~adapterbench.reports.aggregate.Stat`) that says nothing worth drawing: the t
    interval over two seeds (one degree of freedom: 12.7 sample stds wide) or one at least 1 wide (the whole
    range of a [0, 1] metric). Reports name it ("interval uninformative") rather than print or draw it."""
    if not (s and s.interval):
        return False
    return (s.interval_kind == "seeds" and s.n <= 2) or s.interval[1] - s.interval[0] >= 1.0


def error_bar(row: Row, key: str = "primary") -> tuple[float, float]:
    """(below, above) the mean: the row's 95% interval where it has one, else ± its std (0 without); no bar
    (0, 0) for an :func:`uninformative` interval."""
    s = row.stats.get(key)
    if s is None or uninformative(s):
        return 0.0, 0.0
    if s.interval:
        return max(0.0, s.mean - s.interval[0]), max(0.0, s.interval[1] - s.mean)
    return (s.std or 0.0), (s.std or 0.0)


def bar_words(rows: Sequence[Row], key: str = "primary") -> str:
    """What the error bars of ``rows`` show, for the axis label."""
    with_interval = [r for r in rows if r.stats.get(key) and r.stats[key].interval]
    if with_interval and all(uninformative(r.stats[key]) for r in with_interval):
        return "mean; no bars: every interval uninformative (2 seeds)"
    text = ("mean ± std over seeds" if not with_interval else "mean, 95% interval" if len(with_interval) == len(rows)
            else "mean, 95% interval (± std where none)")
    return text + ("; none where uninformative" if any(uninformative(r.stats.get(key)) for r in rows) else "")


def pareto_chart(table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric (error bars: the table's intervals) against parameters as deployed, log x, with the Pareto
    frontier. Every spot is numbered next to its marker without overlap; the key beside the chart maps numbers
    to rows (rows drawn at one spot share a number)."""
    from matplotlib.lines import Line2D

    points = [(row, cv) for row in table.rows if (cv := cost_value(row)) is not None]
    if len(points) < 2:  # one point has no trade-off to show; the table says it all
        return None
    spots = sorted(point_clusters(points), key=lambda c: (c[0][0], c[0][1]))
    fig = _figure(10.0, 5.0)
    ax = fig.add_subplot()
    _style(ax)
    handles, labels = [], []
    for number, ((cost, value), rows) in enumerate(spots, start=1):
        lead = rows[0]
        below, above = error_bar(lead)
        pareto = any(r.pareto for r in rows)
        color = colors.get(lead.config.variant)
        ax.errorbar(cost, value, yerr=[[below], [above]], fmt="o", ms=7, color=color, capsize=3, elinewidth=1.1,
                    markeredgecolor="black" if pareto else "white", markeredgewidth=1.4 if pareto else 0.8,
                    zorder=3)
        handles.append(Line2D([], [], marker="o", linestyle="none", color=color, markersize=6,
                              markeredgecolor="black" if pareto else "white"))
        labels.append(f"{number}  {cluster_label(rows)}")
    front = sorted((cv for row, cv in points if row.pareto), key=lambda cv: cv[0])
    if len(front) > 1:
        ax.plot([c for c, _ in front], [v for _, v in front], "--", color="#111827", linewidth=1.2, zorder=2,
                drawstyle="steps-post")
        handles.append(Line2D([], [], linestyle="--", color="#111827"))
        labels.append("Pareto frontier (◆)")
    ax.set_xscale("log")
    ax.set_xlim(*_log_limits([c for (c, _), _ in spots]))
    ax.set_ylim(*_value_limits([v for (_, v), _ in spots], [error_bar(rows[0]) for _, rows in spots]))
    ax.set_xlabel("parameters as deployed: adapter kept + task head (count, log scale)")
    direction = "higher is better" if table.greater_is_better else "lower is better"
    ax.set_ylabel(f"{table.primary} ({bar_words([rows[0] for _, rows in spots])})", fontsize=9)
    ax.set_title(f"{table.key.task}: {table.primary} against deployed parameters ({direction})", fontsize=11)
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False, title="key",
               title_fontsize=8, alignment="left")
    bars = [((c, v - b), (c, v + a)) for ((c, v), rows) in spots for b, a in [error_bar(rows[0])]]
    steps = [seg for (c0, v0), (c1, v1) in zip(front, front[1:]) for seg in (((c0, v0), (c1, v0)), ((c1, v0), (c1, v1)))]
    numbered_labels(ax, fig, [spot for spot, _ in spots], [str(n) for n in range(1, len(spots) + 1)], 8.5,
                     [*bars, *steps])
    return _save(fig, path)


def _log_limits(costs: Sequence[float]) -> tuple[float, float]:
    """A log axis with a fifth of a decade of room on both sides, for the labels."""
    low, high = math.log10(min(costs)), math.log10(max(costs))
    pad = max(0.2, 0.08 * (high - low))
    return 10 ** (low - pad), 10 ** (high + pad)


def _value_limits(values: Sequence[float], bars: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The metric axis: every mean with room for its label, and the error bars unless one is so wide (two seeds
    give a t interval of ±12.7 standard errors) that it would flatten every difference; those are cut at the
    edge."""
    low, high = min(values), max(values)
    span = max(high - low, 0.02)
    reach = 0.4 * span
    lows = [v - min(b, reach) for v, (b, _) in zip(values, bars)]
    highs = [v + min(a, reach) for v, (_, a) in zip(values, bars)]
    return min(lows) - 0.08 * span, max(highs) + 0.08 * span


def point_clusters(points: Sequence[tuple[Row, tuple[float, float]]]
                   ) -> list[tuple[tuple[float, float], list[Row]]]:
    """Rows drawn at the same (cost, value) spot, so that they get one label instead of a pile of them."""
    clusters: dict[tuple[float, float], list[Row]] = {}
    for row, (cost, value) in points:
        clusters.setdefault((round(cost, 6), round(value, 9)), []).append(row)
    return list(clusters.items())


def cluster_label(rows: Sequence[Row]) -> str:
    """``lora, dylora@r=1…8`` for rows sharing one spot: evaluation points of a configuration compressed (the
    last label loses the prefix it shares with the first, digits aside)."""
    parts: dict[str, list[Row]] = {}
    for row in rows:
        parts.setdefault(row.base_label, []).append(row)
    labels = []
    for base, group in parts.items():
        if len(group) == 1:
            labels.append(group[0].label)
        else:
            first, last = group[0].point_label, group[-1].point_label
            common = os.path.commonprefix([first, last])  # "r=1", "r=8" -> "r=1…8"
            labels.append(f"{base}@{first}…{last[len(common.rstrip('0123456789.')):]}")
    return ", ".join(labels)


# ---- resources: peak memory and throughput per configuration --------------------------------------------
def _per_config(rows: Sequence[Row]) -> list[Row]:
    """One row per configuration: evaluation points share their run's measurements."""
    seen, out = set(), []
    for row in rows:
        if row.config not in seen:
            seen.add(row.config)
            out.append(row)
    return out


def resource_chart(table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Two bar charts side by side: peak training memory and training throughput, per configuration."""
    rows = _per_config(table.rows)
    mem = [row.stats.get(PEAK_MEMORY.key) for row in rows]
    sps = [row.stats.get(TRAIN_SPS.key) for row in rows]
    if len(rows) < 2 or (not any(mem) and not any(sps)):
        return None
    fig = _figure(9.0, 0.9 + 0.42 * len(rows))
    axes = fig.subplots(1, 2, sharey=True)
    labels = [row.base_label for row in rows]
    ys = list(range(len(rows)))
    biggest = max((s.mean for s in mem if s), default=1.0)
    div, unit = bytes_unit(biggest)
    for ax, stats, scale, xlabel, best_key in (
            (axes[0], mem, div, f"{PEAK_MEMORY.title} ({unit})", PEAK_MEMORY.key),
            (axes[1], sps, 1.0, f"{TRAIN_SPS.title} ({TRAIN_SPS.unit})", TRAIN_SPS.key)):
        _style(ax)
        ax.grid(True, axis="x", color="#e5e7eb")
        ax.grid(False, axis="y")
        for y, row, s in zip(ys, rows, stats):
            if s is None:
                ax.text(0, y, " not measured", va="center", fontsize=8, color="#6b7280")
                continue
            best = best_key in row.best
            ax.barh(y, s.mean / scale, xerr=s.std / scale if s.std else None, color=colors.get(row.config.variant),
                    edgecolor="black" if best else "none", linewidth=1.5, capsize=2, height=0.65)
        ax.set_xlabel(xlabel)
    axes[0].set_yticks(ys, labels, fontsize=9)
    axes[0].invert_yaxis()
    axes[0].set_title("peak memory (lower is better)", fontsize=10)
    axes[1].set_title("throughput (higher is better)", fontsize=10)
    fig.suptitle(f"{table.key.task}: training cost per variant (best outlined)", fontsize=11)
    return _save(fig, path)


# ---- rank maps: rank per layer and module -----------------------------------------------------------
def short_roles(roles: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each role that no other role ends with: ``attention.self.query`` ->
    ``query``, but ``attention.output.dense`` and ``output.dense`` stay apart."""
    unique = sorted(set(roles))
    out = {}
    for role in unique:
        parts = role.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if not any(o != role and (o == suffix or o.endswith("." + suffix)) for o in unique):
                out[role] = suffix
                break
        else:
            out[role] = role
    return out


def rank_grid(ranks: dict[str, float]) -> tuple[list[str], list[int], list[list[float | None]]]:
    """(role labels, layer indices, matrix[role][layer]) from ``{module_name: rank}``; names without a layer
    index are left out."""
    parsed = [(parse_module_name(n), r) for n, r in ranks.items()]
    parsed = [((layer, role), r) for (layer, role), r in parsed if layer is not None]
    layers = sorted({layer for (layer, _), _ in parsed})
    roles = list(dict.fromkeys(role for (_, role), _ in parsed))  # first-seen order follows the model
    matrix: list[list[float | None]] = [[None] * len(layers) for _ in roles]
    for (layer, role), rank in parsed:
        matrix[roles.index(role)][layers.index(layer)] = rank
    short = short_roles(roles)
    return [short[r] for r in roles], layers, matrix


def mean_rank_map(ranks: pd.DataFrame) -> dict[str, float] | None:
    """The per-module mean over runs (seeds of one configuration) of a rank frame (``module``, ``rank``), in the
    order the model lists its modules."""
    if ranks.empty:
        return None
    means = ranks.groupby("module", sort=False)["rank"].mean()
    return {str(k): float(v) for k, v in means.items()}


def rank_heatmap(ranks: dict[str, float], title: str, path: Path) -> Path | None:
    roles, layers, matrix = rank_grid(ranks)
    if not layers:
        return None
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    fig = _figure(max(6.5, 2.2 + 0.75 * len(layers)), 2.0 + 0.45 * len(roles))
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="viridis", aspect="auto")
    for i in range(len(roles)):
        for j in range(len(layers)):
            if not np.isnan(data[i, j]):
                light = data[i, j] < np.nanmean(data)
                ax.text(j, i, f"{data[i, j]:.2g}" if data[i, j] < 10 else f"{data[i, j]:.0f}", ha="center",
                        va="center", fontsize=8,
                        color="white" if light else "black")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(roles)), roles, fontsize=9)
    ax.set_xlabel("layer index")
    ax.set_ylabel("adapted module")
    fig.colorbar(image, ax=ax, label="final rank")
    ax.set_title(title, fontsize=10, wrap=True)
    return _save(fig, path)


# ---- evaluation points ---------------------------------------------------------------------------------------
def points_chart(table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric at each evaluation point, one line per configuration evaluated at several points; the x
    axis as the variants declare it (title and scale; points that are not numbers go on a category axis)."""
    series: dict[str, list[Row]] = {}
    for row in table.rows:
        if row.point is not None and row.stats.get("primary"):
            series.setdefault(row.base_label, []).append(row)
    series = {k: v for k, v in series.items() if len(v) > 1}
    if not series:
        return None
    numeric = all(isinstance(r.point, (int, float)) and not isinstance(r.point, bool)
                  for rows in series.values() for r in rows)
    categories = list(dict.fromkeys(r.point_label for rows in series.values() for r in rows))
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    for label, rows in series.items():
        xs = [r.point if numeric else categories.index(r.point_label) for r in rows]
        bars = [error_bar(r) for r in rows]
        ax.errorbar(xs, [r.stats["primary"].mean for r in rows], yerr=[[b for b, _ in bars], [a for _, a in bars]],
                    marker="o", capsize=3, color=colors.get(rows[0].config.variant),
                    label=f"{label} (n={rows[0].stats['primary'].n})")
    scale = table.points_scale if numeric else "category"
    if scale in ("log2", "log") and all(r.point > 0 for rows in series.values() for r in rows):
        ax.set_xscale("log", base=2 if scale == "log2" else 10)
    if numeric:
        ticks = sorted({r.point for rows in series.values() for r in rows})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    else:
        ax.set_xticks(range(len(categories)), categories)
    axis = table.points_axis or "evaluation point"
    ax.set_xlabel(axis + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(f"{table.primary} ({bar_words([r for rows in series.values() for r in rows])})", fontsize=9)
    means = [r.stats["primary"].mean for rows in series.values() for r in rows]
    ax.set_ylim(*_value_limits(means, [error_bar(r) for rows in series.values() for r in rows]))
    ax.set_title(f"{table.key.task}: {table.primary} at each {axis}", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


# ---- trends across dates ----------------------------------------------------------------------------------
def trend_series(runs: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {date: {"metric": mean, "throughput": mean}}}`` over the ok runs of one comparable group (every
    record, older ones included), dates as ``YYYY-MM-DD`` (UTC) of ``created_at``; runs without a date left out."""
    runs = runs[runs["created_at"].notna()]
    if runs.empty:
        return {}
    ids = config_ids(runs)
    labels = label_configs(ids)
    frame = pd.DataFrame({"label": ids.map(labels), "date": runs["created_at"].dt.strftime("%Y-%m-%d"),
                          "metric": pd.to_numeric(runs["primary"], errors="coerce"),
                          "throughput": pd.to_numeric(runs.get(TRAIN_SPS.key), errors="coerce")})
    means = frame.groupby(["label", "date"]).mean()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (label, date), row in means.iterrows():
        out.setdefault(str(label), {})[str(date)] = {k: float(v) for k, v in row.items() if pd.notna(v)}
    return out


def trend_chart(runs: pd.DataFrame, table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric and throughput over run dates, a line per configuration that ran on two dates or more;
    None when no configuration did."""
    series = {label: by_date for label, by_date in trend_series(runs).items() if len(by_date) > 1}
    dates = sorted({d for by_date in series.values() for d in by_date})
    if len(dates) < 2:
        return None
    from datetime import date

    from matplotlib.dates import AutoDateLocator, DateFormatter

    fig = _figure(8.0, 5.2)
    axes = fig.subplots(2, 1, sharex=True)
    variant_of = {label: label.split(" (")[0] for label in series}
    for ax, key, ylabel in ((axes[0], "metric", f"{table.primary} (mean over seeds)"),
                            (axes[1], "throughput", f"{TRAIN_SPS.title} ({TRAIN_SPS.unit})")):
        _style(ax)
        for label, by_date in series.items():
            pts = [(date.fromisoformat(d), v[key]) for d, v in by_date.items() if key in v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label,
                        color=colors.get(variant_of[label]))
        ax.set_ylabel(ylabel, fontsize=9)
    axes[1].set_xlabel("run date (UTC)")
    if len(dates) <= 12:
        axes[1].set_xticks([date.fromisoformat(d) for d in dates])
    else:
        axes[1].xaxis.set_major_locator(AutoDateLocator())
    axes[1].xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    axes[0].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title(f"{table.key.task}: trend over {len(dates)} run dates", fontsize=11)
    return _save(fig, path)

"""Report charts (matplotlib, Agg canvas; no pyplot global state, so it is safe in tests and threads).

Each ``*_chart`` function draws one PNG and returns its path, or ``None`` when there is nothing to draw or
compare (a single configuration, no AdaLoRA record, a single date, ...). The data preparation is in small pure functions (:func:`parse_module_name`,
:func:`rank_grid`, :func:`find_rank_map`, :func:`trend_series`) that tests call directly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapterbench.reports.aggregate import GroupTable, Row, cost_value
from adapterbench.reports.collect import (
    Record,
    config_id,
    created_at,
    dig,
    label_configs,
    primary_key,
)
from adapterbench.reports.units import bytes_unit

DPI = 120
# Suffixes of parameter names that say which tensor of a module, not which module.
_TENSOR_SUFFIXES = {"lora_A", "lora_B", "lora_E", "weight", "bias", "default", "ranknum"}
_RANK_MAP_KEYS = ("final_ranks", "ranks", "rank_pattern", "final_rank")


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


# ---- Pareto: metric against trainable parameters -------------------------------------------------------
def pareto_chart(table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric (mean ± std) against trainable parameters, log x, with the Pareto frontier drawn."""
    points = [(row, cv) for row in table.rows if (cv := cost_value(row)) is not None]
    if len(points) < 2:  # one point has no trade-off to show; the table says it all
        return None
    fig = _figure()
    ax = fig.add_subplot()
    _style(ax)
    seen = set()
    for row, (cost, value) in points:
        std = row.stats["primary"].std if row.stats.get("primary") else None
        variant = row.config.variant
        ax.errorbar(cost, value, yerr=std or 0.0, fmt="o", ms=7, color=colors.get(variant), capsize=3,
                    markeredgecolor="black" if row.pareto else "white", markeredgewidth=1.4 if row.pareto else 0.8,
                    label=variant if variant not in seen else None, zorder=3)
        seen.add(variant)
    values = [v for _, (_, v) in points]
    span = (max(values) - min(values)) or 1.0
    placed: list[tuple[float, float]] = []  # (log10 cost, value) of the labels on the right so far
    for (cost, value), rows in sorted(point_clusters(points), key=lambda c: c[0]):
        if len(rows) == 1 and rows[0].point is not None:
            # Evaluation points of one run share its parameter count: label them "r=4" on the left so they do
            # not collide with the labels of other variants, which sit on the right.
            ax.annotate(rows[0].label.split("@", 1)[1], (cost, value), xytext=(-7, 0), textcoords="offset points",
                        fontsize=7.5, color="#4b5563", ha="right", va="center")
            continue
        # Labels of nearby points (within half a decade, 5% of the value range) are stacked downwards.
        near = sum(1 for x, y in placed if abs(x - math.log10(cost)) < 0.5 and abs(y - value) < 0.05 * span)
        placed.append((math.log10(cost), value))
        ax.annotate(cluster_label(rows), (cost, value), xytext=(7, 4 - 11 * near), textcoords="offset points",
                    fontsize=8, color="#374151")
    front = sorted((cv for row, cv in points if row.pareto), key=lambda cv: cv[0])
    if len(front) > 1:
        ax.plot([c for c, _ in front], [v for _, v in front], "--", color="#111827", linewidth=1.2,
                label="Pareto frontier", zorder=2, drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters, adapter + head (count, log scale)")
    direction = "higher is better" if table.greater_is_better else "lower is better"
    ax.set_ylabel(f"{table.primary} (mean ± std over seeds)")
    ax.set_title(f"{table.key.task}: {table.primary} against trainable parameters ({direction})", fontsize=11)
    ax.legend(fontsize=8, loc="lower right", frameon=True, framealpha=0.9, edgecolor="#e5e7eb")
    return _save(fig, path)


def point_clusters(points: Sequence[tuple[Row, tuple[float, float]]]
                   ) -> list[tuple[tuple[float, float], list[Row]]]:
    """Rows drawn at the same (cost, value) spot, so that they get one label instead of a pile of them."""
    clusters: dict[tuple[float, float], list[Row]] = {}
    for row, (cost, value) in points:
        clusters.setdefault((round(cost, 6), round(value, 9)), []).append(row)
    return list(clusters.items())


def cluster_label(rows: Sequence[Row]) -> str:
    """``lora, dylora@r=1…8`` for rows sharing one spot: evaluation points of a configuration compressed."""
    parts: dict[str, list[Row]] = {}
    for row in rows:
        parts.setdefault(row.label.split("@", 1)[0], []).append(row)
    labels = []
    for base, group in parts.items():
        if len(group) == 1:
            labels.append(group[0].label)
        else:
            first, last = group[0].label.split("@", 1)[1], group[-1].label.split("@", 1)[1].split("=")[-1]
            labels.append(f"{base}@{first}…{last}")
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
    mem = [row.stats.get("memory/peak_bytes") for row in rows]
    sps = [row.stats.get("throughput/train_samples_per_s") for row in rows]
    if len(rows) < 2 or (not any(mem) and not any(sps)):
        return None
    fig = _figure(9.0, 0.9 + 0.42 * len(rows))
    axes = fig.subplots(1, 2, sharey=True)
    labels = [row.label.split("@")[0] for row in rows]
    ys = list(range(len(rows)))
    biggest = max((s.mean for s in mem if s), default=1.0)
    div, unit = bytes_unit(biggest)
    for ax, stats, scale, xlabel, best_key in (
            (axes[0], mem, div, f"peak training memory ({unit})", "memory/peak_bytes"),
            (axes[1], sps, 1.0, "training throughput (samples/s)", "throughput/train_samples_per_s")):
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


# ---- AdaLoRA: final rank per layer and module -------------------------------------------------------------
def parse_module_name(name: str) -> tuple[int | None, str]:
    """``"bert.encoder.layer.3.attention.self.query"`` -> ``(3, "attention.self.query")``.

    The layer is the first all-digit component of the dotted name (``layer.3``, ``layers.3``, ``h.3``); the role
    is what follows it, without tensor suffixes such as ``lora_E`` or ``weight``. Names without a layer index
    give ``(None, name)``.
    """
    parts = [p for p in name.split(".") if p]
    while len(parts) > 1 and parts[-1] in _TENSOR_SUFFIXES:
        parts.pop()
    for i, part in enumerate(parts):
        if part.isdigit() and i > 0:
            role = ".".join(parts[i + 1:]) or parts[i - 1]
            return int(part), role
    return None, ".".join(parts)


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


def find_rank_map(variant_info: Any) -> dict[str, float] | None:
    """The ``{module_name: rank}`` dict inside a record's ``variant_info`` (or ``variant_info`` itself).

    Accepts ranks as numbers or as boolean masks (PEFT's ``rank_pattern``: the rank is the count of True).
    Only dicts whose names carry a layer index count, so unrelated dicts of numbers are not mistaken for one.
    """
    if not isinstance(variant_info, dict):
        return None
    candidates = [variant_info.get(k) for k in _RANK_MAP_KEYS] + [variant_info] + list(variant_info.values())
    for cand in candidates:
        if not isinstance(cand, dict) or not cand:
            continue
        ranks = {}
        for name, value in cand.items():
            if isinstance(value, list) and all(isinstance(v, (bool, int)) for v in value):
                value = sum(bool(v) for v in value)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                break
            ranks[str(name)] = float(value)
        else:
            if any(parse_module_name(n)[0] is not None for n in ranks):
                return ranks
    return None


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


def mean_rank_map(records: Sequence[Record]) -> dict[str, float] | None:
    """The per-module mean of the rank maps of ``records`` (seeds of one configuration)."""
    maps = [m for r in records if (m := find_rank_map(r.get("variant_info")))]
    if not maps:
        return None
    names = list(dict.fromkeys(n for m in maps for n in m))
    return {n: statistics.fmean(m[n] for m in maps if n in m) for n in names}


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
                ax.text(j, i, f"{data[i, j]:g}", ha="center", va="center", fontsize=8,
                        color="white" if light else "black")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(roles)), roles, fontsize=9)
    ax.set_xlabel("layer index")
    ax.set_ylabel("adapted module")
    fig.colorbar(image, ax=ax, label="final rank")
    ax.set_title(title, fontsize=10, wrap=True)
    return _save(fig, path)


# ---- evaluation points (DyLoRA ranks) ---------------------------------------------------------------------
def points_chart(table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric against the evaluated rank, one line per configuration evaluated at several ranks."""
    series: dict[str, list[Row]] = {}
    for row in table.rows:
        if isinstance(row.point, (int, float)) and not isinstance(row.point, bool) and row.stats.get("primary"):
            series.setdefault(row.label.split("@")[0], []).append(row)
    series = {k: v for k, v in series.items() if len(v) > 1}
    if not series:
        return None
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot()
    _style(ax)
    for label, rows in series.items():
        rows = sorted(rows, key=lambda r: r.point)
        ax.errorbar([r.point for r in rows], [r.stats["primary"].mean for r in rows],
                    yerr=[r.stats["primary"].std or 0.0 for r in rows], marker="o", capsize=3,
                    color=colors.get(rows[0].config.variant), label=f"{label} (n={rows[0].stats['primary'].n})")
    ticks = sorted({r.point for rows in series.values() for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("evaluated rank r (log scale)")
    ax.set_ylabel(f"{table.primary} (mean ± std over seeds)")
    ax.set_title(f"{table.key.task}: {table.primary} at each evaluated rank", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


# ---- trends across dates ----------------------------------------------------------------------------------
def trend_series(records: Sequence[Record]) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {date: {"metric": mean, "throughput": mean}}}`` over the ok records of one comparable group,
    dates as ``YYYY-MM-DD`` (UTC) of ``created_at``; records without a date are left out."""
    labels = label_configs(config_id(r) for r in records)
    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in records:
        when = created_at(r)
        if when is None:
            continue
        value = dig(r, "metrics", "primary", "value")
        if value is None:
            value = dig(r, "metrics", "final", primary_key(r))
        cell = raw.setdefault(labels[config_id(r)], {}).setdefault(when.date().isoformat(),
                                                                  {"metric": [], "throughput": []})
        for key, v in (("metric", value), ("throughput", dig(r, "measurements", "throughput/train_samples_per_s"))):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cell[key].append(float(v))
    return {label: {d: {k: statistics.fmean(v) for k, v in cell.items() if v} for d, cell in sorted(by_date.items())}
            for label, by_date in sorted(raw.items())}


def trend_chart(records: Sequence[Record], table: GroupTable, path: Path, colors: dict[str, Any]) -> Path | None:
    """Primary metric and throughput over run dates, a line per configuration that ran on two dates or more;
    None when no configuration did."""
    series = {label: by_date for label, by_date in trend_series(records).items() if len(by_date) > 1}
    dates = sorted({d for by_date in series.values() for d in by_date})
    if len(dates) < 2:
        return None
    from datetime import date

    from matplotlib.dates import AutoDateLocator, DateFormatter

    fig = _figure(8.0, 5.2)
    axes = fig.subplots(2, 1, sharex=True)
    variant_of = {label: label.split(" (")[0] for label in series}
    for ax, key, ylabel in ((axes[0], "metric", f"{table.primary} (mean over seeds)"),
                            (axes[1], "throughput", "training throughput (samples/s)")):
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

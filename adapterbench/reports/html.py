"""The HTML report (``report.html``): one self-contained file.

The Pareto chart is inline SVG (a hover label per point, :mod:`adapterbench.reports.svgcharts`), the other charts
are embedded as base64 PNG data URIs, and the style sheet is inline, so the file opens offline and can be mailed or
attached to a CI run on its own. The answer comes first (``<section id="answer">``), right under the title, and
short: one line per task; its legend, the per-task verdicts and the pairs matrices are folded (``<details>``).
Each group table shows its metrics and folds the costs, the points table and the secondary charts, so that the
page fits 1,400 px without sideways scrolling. Every piece of text that comes from a record is escaped with
:func:`html.escape`. The one script only marks each chart image as loaded or broken (``data-state``), which makes
a chart that failed to decode visible, and lets the browser test check the images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from adapterbench.reports import svgcharts
from adapterbench.reports.aggregate import cost_value, pareto_front
from adapterbench.reports.answer import TASK_HEADERS
from adapterbench.reports.model import (
    FAILED_HEADERS,
    FAILED_INTRO,
    GROUPING,
    LEGEND,
    POINTS_CAPTION,
    SUMMARY_FIELDS,
    TABLE_KEY,
    Block,
    Cell,
    Report,
    failed_table,
    points_cells,
    run_count,
    shown_rows,
    table_parts,
    uninformative,
)

SVG_CAPTION = ("One point per configuration (at its default point); hover a point for its name, metric, interval and "
               "parameters; names shown where they fit. Bars: 95% interval (none where uninformative). Dark edge, "
               "dashed line: the Pareto set ◆.")

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#ffffff; --accent:#2563eb;
        --best-bg:#dcfce7; --best-fg:#14532d; --bad:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); line-height:1.5;
       font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1440px; margin:0 auto; padding:32px 28px 64px; }
h1 { font-size:28px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:21px; margin:40px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:26px 0 8px; color:#374151; }
.sub { color:var(--muted); margin:0 0 20px; }
.summary { display:grid; grid-template-columns:repeat(auto-fit,minmax(200px,1fr)); gap:12px; margin:18px 0;
           align-items:start; }
.summary div { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:10px 14px; }
.summary div.wide { grid-column:span 2; }
.summary dt { font-size:12px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.summary dd { margin:2px 0 0; font-weight:600; overflow-wrap:anywhere; }
.note { background:#eff6ff; border-left:4px solid var(--accent); padding:10px 14px; border-radius:6px;
        margin:12px 0; }
.warn { background:#fef2f2; border-left-color:var(--bad); }
nav { margin:14px 0; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; }
.table-wrap { overflow-x:auto; background:var(--card); border:1px solid var(--line); border-radius:10px; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { background:#f1f5f9; font-weight:600; white-space:normal; vertical-align:bottom; font-size:12.5px;
     min-width:64px; }
th.num, td.num { text-align:right; }
th.text, td.text { text-align:left; }
td.num { font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) { background:#fafafa; }
tbody tr:hover { background:#f1f5f9; }
td.best { background:var(--best-bg); color:var(--best-fg); font-weight:700; }
td.pareto { color:#111827; text-align:center; }
td.msg { white-space:normal; min-width:280px; font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
         font-size:12.5px; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
         color:white; background:var(--bad); }
.badge.oom { background:#c2410c; } .badge.diverged { background:#7c3aed; }
.charts { display:grid; grid-template-columns:repeat(auto-fit,minmax(560px,1fr)); gap:16px; margin-top:16px;
          align-items:start; }
figure { margin:0; background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px; }
figure img { width:100%; height:auto; display:block; }
img[data-state="broken"] { outline:3px solid var(--bad); min-height:60px; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; }
.legend { font-size:13px; color:var(--muted); }
section.answer { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:4px 22px 18px;
                 margin:20px 0 8px; }
section.answer h2 { margin-top:18px; }
section.answer td.text { white-space:normal; min-width:70px; }
section.answer td.num { white-space:normal; }
section.answer table { table-layout:auto; }
details { margin:8px 0; }
details > summary { cursor:pointer; color:var(--accent); font-size:13.5px; }
details.legend p { font-size:13px; color:var(--muted); }
svg.chart { width:100%; height:auto; display:block; }
svg.chart text { fill:#111827; font-family:system-ui,sans-serif; }
svg.chart g.point:hover circle { r:8; }
.part { font-size:12.5px; color:var(--muted); margin:10px 0 4px; }
footer { margin-top:48px; font-size:12px; color:var(--muted); }
"""

# The answer's task table keeps the verdict and its evidence in view; these fold into a second table.
FOLDED_COLUMNS = ("test", "p over seeds (Holm)", "peak memory", "train samples/s", "inference latency (× base)")

SCRIPT = """
document.querySelectorAll("img").forEach(function (img) {
  function mark() { img.dataset.state = img.naturalWidth > 0 ? "loaded" : "broken"; }
  if (img.complete) { mark(); } else { img.addEventListener("load", mark); img.addEventListener("error", mark); }
});
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], classes: Sequence[str] = ()) -> str:
    kinds = ["num" if rows and i < len(rows[0]) and rows[0][i].numeric else "text" for i in range(len(headers))]
    head = "".join(f'<th class="{kind}">{escape(h)}</th>' for h, kind in zip(headers, kinds))
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            cls = [classes[i]] if i < len(classes) and classes[i] else []
            cls.append("num" if cell.numeric else "text")
            if cell.best:
                cls.append("best")
            tds.append(f'<td class="{" ".join(cls)}">{escape(cell.text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _image(folder: Path, file: str, alt: str) -> str:
    data = base64.b64encode((folder / file).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _anchor(index: int) -> str:
    return f"group-{index}"


def _legend(block: Block) -> list[str]:
    if not block.legend:
        return []
    return ['<details class="legend"><summary>How to read this: method and symbols</summary>',
            *(f"<p>{escape(p)}</p>" for p in block.legend), "</details>"]


def _block(block: Block, anchor: str = "", classes: Sequence[str] = ()) -> list[str]:
    """A block: heading, paragraphs, its table and its legend folded. A task block of the answer shows the
    verdict columns and folds the rest (:data:`FOLDED_COLUMNS`) into a second table, so that it fits 1,400 px."""
    ident = f' id="{anchor}"' if anchor else ""
    h = f"h{block.level}"
    parts = [f"<{h}{ident}>{escape(block.title)}</{h}>"] + [f"<p>{escape(p)}</p>" for p in block.paragraphs]
    if block.headers and tuple(block.headers) == TASK_HEADERS:
        fold = [i for i, name in enumerate(block.headers) if name in FOLDED_COLUMNS]
        keep = [i for i in range(len(block.headers)) if i not in fold]
        parts.append(_table([block.headers[i] for i in keep], [[r[i] for i in keep] for r in block.rows], classes))
        parts += ["<details><summary>More columns: the test, p over seeds, memory, throughput, latency</summary>",
                  _table([block.headers[i] for i in [1, *fold]], [[r[i] for i in [1, *fold]] for r in block.rows]),
                  "</details>"]
    elif block.headers:
        parts.append(_table(block.headers, block.rows, classes))
    return parts + _legend(block)


def _summary(report: Report) -> list[str]:
    parts = ['<dl class="summary">']
    for key, title in SUMMARY_FIELDS:
        wide = ' class="wide"' if key in ("models", "sources", "variants") else ""
        parts.append(f"<div{wide}><dt>{escape(title)}</dt><dd>{escape(report.summary.get(key, '—'))}</dd></div>")
    links = [f'<a href="#{_anchor(g.index)}">{escape(g.table.key.task)}'
             f'{" #" + str(i + 1) if len(t.groups) > 1 else ""}</a>'
             for t in report.tasks for i, g in enumerate(t.groups)]
    links.append(f'<a href="#failed">failed runs ({len(report.failed)})</a>')
    if report.answer:
        links.insert(0, '<a href="#answer">the answer</a>')
    return parts + ["</dl>", f'<p class="legend">{escape(LEGEND)}</p>', "<nav>" + "".join(links) + "</nav>"]


def _group(section) -> list[str]:
    """The group's table: the first part in view, the other parts and the points table folded."""
    t = section.table
    direction = "higher is better" if t.greater_is_better else "lower is better"
    parts = [f'<h3 id="{_anchor(section.index)}">{escape(t.key.describe())}</h3>',
             f'<p class="sub">Primary metric <b>{escape(t.primary)}</b> ({direction}); {run_count(t)} run(s).</p>',
             f'<p class="part">{escape(TABLE_KEY)}</p>']
    table_parts_ = table_parts(t, learned=section.learned)
    for n, (caption, headers, rows) in enumerate(table_parts_):
        if n == 1:
            parts.append("<details><summary>More columns: " + escape(", ".join(c for c, _, _ in table_parts_[1:]))
                         + "</summary>")
        parts += [f'<p class="part">{escape(caption)}</p>', _table(headers, rows, classes=["", "", "", "pareto"])]
    if len(table_parts_) > 1:
        parts.append("</details>")
    points = points_cells(t, section.learned)
    if points:
        parts += [f"<details><summary>{escape(POINTS_CAPTION)}</summary>", _table(*points), "</details>"]
    return parts


def _charts(section, folder: Path) -> list[str]:
    """The Pareto chart as inline SVG with hover labels, the points chart in view; the others folded."""
    shown, folded = [], []
    for c in section.charts:
        svg = None
        if c.file.endswith("-pareto.png"):
            rows = shown_rows(section.table)
            pareto = pareto_front([cost_value(r) for r in rows], section.table.greater_is_better)
            svg = svgcharts.pareto_svg(rows, c.title, section.table.greater_is_better, uninformative, pareto)
        body = svg or _image(folder, c.file, c.title)
        caption = SVG_CAPTION if svg else c.caption
        figure = f"<figure>{body}<figcaption>{escape(c.title)}. {escape(caption)}</figcaption></figure>"
        (shown if svg or c.file.endswith("-points.png") else folded).append(figure)
    out = ['<div class="charts">', *shown, "</div>"] if shown else []
    if folded:
        out += [f"<details><summary>More charts ({len(folded)}): memory and throughput, trends, rank maps"
                "</summary>", '<div class="charts">', *folded, "</div></details>"]
    return out


def render_html(report: Report, folder: Path) -> str:
    """The report as one HTML page; ``folder`` holds the chart PNGs to embed."""
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>adapterbench report</title>", f"<style>{CSS}</style></head><body><main>",
             "<h1>adapterbench report</h1>",
             f'<p class="sub">Generated {escape(report.generated_at)} by <code>bench report</code>.</p>']
    if report.answer:
        parts.append('<section class="answer" id="answer">')
        head, *rest = report.answer
        parts += _block(head)
        if rest:
            parts.append("<details><summary>Every verdict with its evidence, per task; the pairs matrices; across "
                         "tasks</summary>")
            for block in rest:
                parts += _block(block)
            parts.append("</details>")
        parts.append("</section>")
    runs = report.summary.get("runs", "—")
    parts += [f"<details class=\"about\"><summary>About these runs ({escape(runs)}; "
              f"{escape(report.summary.get('groups', '—'))} comparable group(s)) and how to read the tables"
              "</summary>", *_summary(report)[:-1], "</details>", _summary(report)[-1]]
    for task in report.tasks:
        parts.append(f"<h2>{escape(task.task)}</h2>")
        if task.explanation:
            parts.append(f'<div class="note grouping"><b>Separate tables.</b> {escape(task.explanation)} '
                         f"{escape(GROUPING)}</div>")
        for section in task.groups:
            parts += _group(section) + _charts(section, folder)
    failed = failed_table(report.failed)
    block = Block("Failed runs", [] if failed else ["None: every run finished."], FAILED_HEADERS if failed else (),
                  failed)
    table = "\n".join(_block(block, "failed", classes=["", "", "", "status", "", "msg", ""]))
    for status in ("failed", "oom", "diverged"):  # status cells as coloured badges
        table = table.replace(f'<td class="status text">{status}</td>',
                              f'<td class="status text"><span class="badge {status}">{status}</span></td>')
    if failed:
        table = table.replace("</h2>", f'</h2><div class="note warn">{escape(FAILED_INTRO)}</div>', 1)
    else:  # nothing to list: one line, not a section
        table = '<p class="sub" id="failed">Failed runs: none, every run finished.</p>'
    parts.append(table)
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("<footer>Written by <code>bench report</code>. The same numbers are in table.csv; "
                 "report.md holds the same content in Markdown.</footer>")
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"

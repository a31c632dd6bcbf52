"""The HTML report (``report.html``): one self-contained file.

Charts are embedded as base64 PNG data URIs and the style sheet is inline, so the file opens offline and can be
mailed or attached to a CI run on its own. The answer comes first (``<section id="answer">``), right under the
title; each group table follows in its parts (metrics, then costs). Every piece of text that comes from a record is escaped with
:func:`html.escape`. The one script only marks each chart as loaded or broken (``data-state``), which makes a
chart that failed to decode visible, and lets the browser test check the images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from adapterbench.reports.model import (
    FAILED_HEADERS,
    FAILED_INTRO,
    GROUPING,
    LEGEND,
    SUMMARY_FIELDS,
    Block,
    Cell,
    Report,
    failed_table,
    run_count,
    table_parts,
)

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
th, td { padding:7px 10px; border-bottom:1px solid var(--line); white-space:nowrap; }
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
section.answer td.text { white-space:normal; min-width:90px; }
.part { font-size:12.5px; color:var(--muted); margin:10px 0 4px; }
footer { margin-top:48px; font-size:12px; color:var(--muted); }
"""

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


def _block(block: Block, anchor: str = "", classes: Sequence[str] = ()) -> list[str]:
    ident = f' id="{anchor}"' if anchor else ""
    h = f"h{block.level}"
    parts = [f"<{h}{ident}>{escape(block.title)}</{h}>"] + [f"<p>{escape(p)}</p>" for p in block.paragraphs]
    if block.headers:
        parts.append(_table(block.headers, block.rows, classes))
    return parts


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
    return parts + ["</dl>", "<nav>" + "".join(links) + "</nav>", f'<p class="legend">{escape(LEGEND)}</p>']


def _group(section) -> list[str]:
    t = section.table
    direction = "higher is better" if t.greater_is_better else "lower is better"
    parts = [f'<h3 id="{_anchor(section.index)}">{escape(t.key.describe())}</h3>',
             f'<p class="sub">Primary metric <b>{escape(t.primary)}</b> ({direction}); {run_count(t)} run(s).</p>']
    for caption, headers, rows in table_parts(t, learned=section.learned):
        parts += [f'<p class="part">{escape(caption)}</p>', _table(headers, rows, classes=["", "", "pareto"])]
    return parts


def _charts(section, folder: Path) -> list[str]:
    if not section.charts:
        return []
    figures = [f"<figure>{_image(folder, c.file, c.title)}<figcaption>{escape(c.caption)}</figcaption></figure>"
               for c in section.charts]
    return ['<div class="charts">', *figures, "</div>"]


def render_html(report: Report, folder: Path) -> str:
    """The report as one HTML page; ``folder`` holds the chart PNGs to embed."""
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>adapterbench report</title>", f"<style>{CSS}</style></head><body><main>",
             "<h1>adapterbench report</h1>",
             f'<p class="sub">Generated {escape(report.generated_at)} by <code>bench report</code>.</p>']
    if report.answer:
        parts.append('<section class="answer" id="answer">')
        for block in report.answer:
            parts += _block(block)
        parts.append("</section>")
    parts += _summary(report)
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
    parts.append(table)
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("<footer>Written by <code>bench report</code>. The same numbers are in table.csv; "
                 "report.md holds the same content in Markdown.</footer>")
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"

"""The Markdown report (``report.md``): the report model in Markdown, charts linked as PNG files. The answer
comes first, right under the title; each group table follows in its parts (metrics, then costs).

Text from records (error messages, names) is escaped: pipes cannot break a table, and ``<``/``>``/``&`` cannot
become HTML in renderers that allow inline HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    table_parts,
)


def md_escape(text: object) -> str:
    """One line of Markdown-safe text: HTML characters, pipes, backticks and emphasis marks neutralised."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in ("\\", "|", "`", "*", "_", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |",
             "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(headers))) + "|"]
    for row in rows:
        texts = [f"**{md_escape(c.text)}**" if c.best else md_escape(c.text) for c in row]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


def md_block(block: Block) -> list[str]:
    out = [f"{'#' * block.level} {md_escape(block.title)}", ""]
    for paragraph in block.paragraphs:
        out += [md_escape(paragraph), ""]
    if block.headers:
        out += [md_table(block.headers, block.rows), ""]
    for paragraph in block.legend:
        out += [f"*{md_escape(paragraph)}*", ""]
    return out


def render_markdown(report: Report) -> str:
    out = ["# adapterbench report", "", f"Generated {report.generated_at}.", ""]
    for block in report.answer:
        out += md_block(block)
    out += ["## The runs", ""]
    for key, title in SUMMARY_FIELDS:
        out.append(f"- **{title}:** {md_escape(report.summary.get(key, '—'))}")
    out += ["", md_escape(LEGEND) + " Best values are in **bold**.", ""]
    for task in report.tasks:
        out += [f"## {md_escape(task.task)}", ""]
        if task.explanation:
            out += [f"> {md_escape(task.explanation)} {GROUPING}", ""]
        for section in task.groups:
            t = section.table
            direction = "higher is better" if t.greater_is_better else "lower is better"
            out += [f"### {md_escape(t.key.describe())}", "",
                    f"Primary metric: {md_escape(t.primary)} ({direction}); {run_count(t)} run(s).", "",
                    f"*{md_escape(TABLE_KEY)}*", ""]
            for caption, headers, rows in table_parts(t, learned=section.learned):
                out += [f"*{md_escape(caption)}*", "", md_table(headers, rows), ""]
            points = points_cells(t, section.learned)
            if points:
                out += [f"*{md_escape(POINTS_CAPTION)}*", "", md_table(*points), ""]
            for chart in section.charts:
                out += [f"![{md_escape(chart.title)}]({chart.file})", "", f"*{md_escape(chart.caption)}*", ""]
    failed = failed_table(report.failed)
    out += md_block(Block("Failed runs", [FAILED_INTRO] if failed else ["None: every run finished."],
                          FAILED_HEADERS if failed else (), failed))
    if report.notes:
        out += ["## Notes", ""] + [f"- {md_escape(n)}" for n in report.notes] + [""]
    return "\n".join(out).rstrip() + "\n"

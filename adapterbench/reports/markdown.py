"""The Markdown report (``report.md``): the same content as the HTML report, charts linked as PNG files.

Text from records (error messages, names) is escaped: pipes cannot break a table, and ``<``/``>``/``&`` cannot
become HTML in renderers that allow inline HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapterbench.reports.build import Cell, Report, run_count, table_cells
from adapterbench.reports.collect import dig

SUMMARY_FIELDS = (("tasks", "Tasks"), ("variants", "Variants"), ("models", "Models"), ("profiles", "Profiles"),
                  ("runs", "Runs"), ("groups", "Comparable groups"), ("seeds", "Seeds"), ("dates", "Run dates"),
                  ("sources", "Records from"))
GROUPING = ("Records are averaged together only when the task version, the model (name and weights) and the "
            "profile are equal; otherwise each set gets its own table.")


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


def render_markdown(report: Report) -> str:
    out = ["# adapterbench report", "", f"Generated {report.generated_at}.", ""]
    for key, title in SUMMARY_FIELDS:
        out.append(f"- **{title}:** {md_escape(report.summary.get(key, '—'))}")
    out += ["", "How to read the tables: one row per variant configuration (DyLoRA: one per evaluated rank, "
            "`variant@r=N`); metrics are mean ± sample std over seeds, with n the number of seeds; the other "
            "columns are means over seeds. The best value of each column is in **bold** (↑ higher is better, "
            "↓ lower is better; not marked when all rows agree). ◆ marks the Pareto set: no other row has both "
            "a better primary metric and fewer trainable parameters. Trainable parameters are counted by "
            "`requires_grad`: adapter and task head apart.", ""]
    for task in report.tasks:
        out += [f"## {md_escape(task.task)}", ""]
        if task.explanation:
            out += [f"> {md_escape(task.explanation)} {GROUPING}", ""]
        for section in task.groups:
            t = section.table
            direction = "higher is better" if t.greater_is_better else "lower is better"
            out += [f"### {md_escape(t.key.describe())}", "",
                    f"Primary metric: {md_escape(t.primary)} ({direction}); {run_count(t)} run(s).", ""]
            headers, rows = table_cells(t)
            out += [md_table(headers, rows), ""]
            for chart in section.charts:
                out += [f"![{md_escape(chart.title)}]({chart.file})", "", f"*{md_escape(chart.caption)}*", ""]
    out += ["## Failed runs", ""]
    if report.failed:
        out.append("Runs that did not finish are not in the tables above; they are listed here with their error.")
        out.append("")
        rows = []
        for path, r in report.failed:
            rows.append([Cell(str(x), numeric=False) for x in (
                dig(r, "task", "name"), dig(r, "variant", "name"), r.get("seed"), r.get("status"),
                dig(r, "error", "type") or "—", dig(r, "error", "message") or "—", path.name)])
        out += [md_table(["task", "variant", "seed", "status", "error type", "message", "record"], rows), ""]
    else:
        out += ["None: every run finished.", ""]
    if report.notes:
        out += ["## Notes", ""] + [f"- {md_escape(n)}" for n in report.notes] + [""]
    return "\n".join(out).rstrip() + "\n"

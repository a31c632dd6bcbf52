"""The HTML report in a real headless Chromium: it loads offline with no console message, shows the answer first,
then its tables and its charts (every image decoded: the page's script marks each ``img`` with ``data-state``).

Uses Chromium's own command-line modes (``--dump-dom``, ``--screenshot``), no extra Python dependency. Skipped
when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adapterbench.reports.build import write_report
from adapterbench.reports.html import FOLDED_COLUMNS
from adapterbench.reports.model import points_cells, table_parts

pytestmark = pytest.mark.browser
sys.path.insert(0, str(Path(__file__).parent))
from browser_measure import measure  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium); the browser check needs it",
                allow_module_level=True)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh profile for every launch
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=False)


class Dom(HTMLParser):
    """Counts what the reader should see: tables, body rows, images and their load state, headings."""

    def __init__(self):
        super().__init__()
        self.tables = 0
        self.body_rows = 0
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []
        self.answer_tables = 0  # tables inside <section id="answer">
        self.answer_rows: list[list[list[str]]] = []  # per answer table, its body rows as text
        self.first_h2_after_answer = None  # the heading that follows the answer section
        self._in_tbody = False
        self._heading = False
        self._in_answer = False
        self._answer_done = False
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id") == "answer":
            self._in_answer = True
        if tag == "table":
            self.tables += 1
            self.answer_tables += self._in_answer
            if self._in_answer:
                self.answer_rows.append([])
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.body_rows += 1
            if self._in_answer:
                self.answer_rows[-1].append([])
        elif tag == "td" and self._in_answer:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs)
        elif tag in ("h2", "h3"):
            self._heading = True
            self.headings.append("")
            if tag == "h2" and self._answer_done and self.first_h2_after_answer is None:
                self.first_h2_after_answer = len(self.headings) - 1

    def handle_endtag(self, tag):
        if tag == "section" and self._in_answer:
            self._in_answer, self._answer_done = False, True
        if tag == "td" and self._cell is not None:
            self.answer_rows[-1][-1].append(self._cell)
            self._cell = None
        if tag == "tbody":
            self._in_tbody = False
        elif tag in ("h2", "h3"):
            self._heading = False

    def handle_data(self, data):
        if self._heading:
            self.headings[-1] += data
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def report(tmp_path_factory, real_records):
    out = tmp_path_factory.mktemp("browser") / "report"
    return write_report([real_records["mixed"]], out), out


def test_report_loads_without_console_errors_and_shows_tables_and_charts(report, tmp_path):
    model, out = report
    result = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", (out / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    # Chromium logs every console message (errors, uncaught exceptions, failed loads) as "...:CONSOLE..."
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)

    dom = Dom()
    dom.feed(result.stdout)
    groups = [g for t in model.tasks for g in t.groups]
    answer = [b for b in model.answer if b.headers]
    task_blocks = [b for b in answer if any(h in b.headers for h in FOLDED_COLUMNS)]
    parts = [part for g in groups for part in table_parts(g.table, learned=g.learned)]
    points = [p for g in groups if (p := points_cells(g.table, g.learned))]
    # The answer's tables (a task table in two: the verdicts, then its folded columns), each group table in its
    # parts (metrics, size, time and memory), the points tables, the failed runs.
    assert dom.answer_tables == len(answer) + len(task_blocks) and len(answer) >= 3
    assert dom.tables == len(answer) + len(task_blocks) + len(parts) + len(points) + 1
    assert len(parts) >= 3 * len(groups)
    assert dom.body_rows == (sum(len(b.rows) for b in answer) + sum(len(b.rows) for b in task_blocks)
                             + sum(len(rows) for _, _, rows in parts) + sum(len(r) for _, r in points)
                             + len(model.failed))
    # The answer comes first: its heading is the page's first h2, and each comparable group has a line.
    assert dom.headings[0] == "The answer"
    assert dom.first_h2_after_answer is not None and dom.headings.index("sst2") >= dom.first_h2_after_answer
    summary = dom.answer_rows[0]  # the answer's first table: one row per comparable group
    assert len(summary) == len(groups) and all(len(row) == 9 for row in summary)
    assert {row[2].rstrip("‡") for row in summary} == {g.answer.best if g.answer else "none learned" for g in groups}
    # every pairs matrix is on the page, with a row and a column per configuration and "—" on its diagonal
    matrices = [b for b in answer if b.title.endswith("which pairs differ")]
    assert all(b.title in dom.headings for b in matrices)
    charts = sum(len(g.charts) for g in groups)
    svgs = result.stdout.count('<svg class="chart"')
    assert charts >= 5 and len(dom.images) + svgs == charts and svgs >= 1  # the Pareto charts inline, as SVG
    assert all((img.get("src") or "").startswith("data:image/png;base64,") for img in dom.images)
    assert [img.get("data-state") for img in dom.images] == ["loaded"] * len(dom.images)
    assert "Failed runs" in dom.headings and "sst2" in dom.headings


def test_report_screenshot(report, tmp_path):
    _, out = report
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--window-size=1400,2400", "--hide-scrollbars", f"--screenshot={shot}",
                      (out / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 2400)
    assert len(data) > 100_000  # a page with tables and charts, not a blank one
    print(f"screenshot of the report: {shot}")


# ---- the page at 1,400 px (issue 22 §4) -------------------------------------------------------------------
def test_the_answer_fits_1400_px_without_sideways_scrolling(report, tmp_path):
    """With every folded part of the answer opened, neither the answer section nor any table in it scrolls
    sideways (scrollWidth <= clientWidth)."""
    _, out = report
    found = measure(out / "report.html", tmp_path, CHROMIUM)
    assert found["answer_width"][1] > 1000  # the section was laid out at the window's width
    assert found["answer_tables"] >= 4  # the folded tables were opened and measured too
    assert found["answer_wide"] == []


def test_no_two_chart_labels_overlap_and_every_point_has_a_hover_label(report, tmp_path):
    model, out = report
    found = measure(out / "report.html", tmp_path, CHROMIUM)
    shown = [r for g in (g for t in model.tasks for g in t.groups) for r in g.table.rows
             if r.point is None or r is [x for x in g.table.rows if x.base_label == r.base_label][-1]]
    assert found["svg_charts"] >= 1 and found["labels"] >= 2  # names are drawn where they fit
    assert found["overlaps"] == []  # on the rendered boxes of the visible labels
    assert found["hover_titles"] >= found["labels"] and found["hover_titles"] <= len(shown)


def test_measure_sees_overlapping_labels(tmp_path):
    """The overlap check itself can fail: two labels drawn at one spot are caught."""
    page = tmp_path / "overlap.html"
    page.write_text('<!DOCTYPE html><html><body><section id="answer"><p>x</p></section>'
                    '<svg class="chart" width="300" height="100"><text class="label" x="10" y="20">first label</text>'
                    '<text class="label" x="14" y="22">second label</text></svg></body></html>')
    found = measure(page, tmp_path, CHROMIUM)
    assert found["labels"] == 2 and len(found["overlaps"]) == 1

"""The HTML report in a real headless Chromium: it loads offline with no console message, and shows its tables
and its charts (every image decoded: the page's script marks each ``img`` with ``data-state``).

Uses Chromium's own command-line modes (``--dump-dom``, ``--screenshot``), no extra Python dependency. Skipped
when Chromium is not installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from adapterbench.reports.build import write_report

pytestmark = pytest.mark.browser

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
        self._in_tbody = False
        self._heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.body_rows += 1
        elif tag == "img":
            self.images.append(attrs)
        elif tag in ("h2", "h3"):
            self._heading = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_tbody = False
        elif tag in ("h2", "h3"):
            self._heading = False

    def handle_data(self, data):
        if self._heading:
            self.headings[-1] += data


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
    assert dom.tables == len(groups) + 1  # one per comparable group, and the failed runs
    assert dom.body_rows == sum(len(g.table.rows) for g in groups) + len(model.failed)
    charts = sum(len(g.charts) for g in groups)
    assert charts >= 5 and len(dom.images) == charts
    assert all((img.get("src") or "").startswith("data:image/png;base64,") for img in dom.images)
    assert [img.get("data-state") for img in dom.images] == ["loaded"] * charts
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

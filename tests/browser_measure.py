"""Measures a report page in headless Chromium at a given width: the page's height, whether the answer section or
any table in it scrolls sideways (every folded part of the answer opened first), and the rendered boxes of the
charts' visible labels (pairs that overlap). Used by tests/test_report_browser.py; also a script, for the page
heights of two reports side by side::

    python tests/browser_measure.py OLD/report.html NEW/report.html

The measuring script is added to a copy of the page, never to the report itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = """<script>
(function () {
  var out = {height: document.documentElement.scrollHeight};
  var answer = document.getElementById("answer");
  out.answer_wide = []; out.answer_width = [0, 0]; out.answer_tables = 0;
  if (answer) {
    var folded = Array.from(answer.querySelectorAll("details"));
    folded.forEach(function (d) { d.open = true; });
    var boxes = [answer].concat(Array.from(answer.querySelectorAll(".table-wrap, table")));
    boxes.forEach(function (el) {
      if (el.scrollWidth > el.clientWidth) { out.answer_wide.push([el.tagName, el.scrollWidth, el.clientWidth]); }
    });
    out.answer_tables = answer.querySelectorAll("table").length;
    out.answer_width = [answer.scrollWidth, answer.clientWidth];
    folded.forEach(function (d) { d.open = false; });
  }
  var overlaps = [], labels = 0;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var boxes = Array.from(svg.querySelectorAll("text.label")).map(function (t) {
      var r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, t.textContent]; });
    labels += boxes.length;
    for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length; j++) {
      var a = boxes[i], b = boxes[j];
      if (a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]) { overlaps.push([a[4], b[4]]); }
    }
  });
  out.labels = labels; out.overlaps = overlaps;
  out.svg_charts = document.querySelectorAll("svg.chart").length;
  out.hover_titles = document.querySelectorAll("svg.chart g.point > title").length;
  var pre = document.createElement("pre"); pre.id = "measured"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def measure(html: Path, tmp: Path, chromium: str = "chromium", width: int = 1400) -> dict:
    """What :data:`SCRIPT` measured on a copy of ``html`` rendered at ``width`` px (a fresh profile under ``tmp``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    page = tmp / f"measured-{html.parent.name}.html"
    page.write_text(html.read_text().replace("</body>", SCRIPT + "</body>"))
    profile = tmp / f"profile-measure-{len(list(tmp.glob('profile-measure-*')))}"
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--window-size={width},900", f"--user-data-dir={profile}",
                             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=300, check=False)
    found = re.search(r'<pre id="measured">(.*?)</pre>', result.stdout, re.S)
    if not found:
        raise RuntimeError(f"chromium measured nothing: {result.stderr[-2000:]}")
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(sys.argv[1:]):
            m = measure(Path(name), Path(tmp) / str(i), "chromium")
            print(f"{name}: height {m['height']} px at 1400 px; answer scrolls sideways: {bool(m['answer_wide'])}; "
                  f"chart labels {m['labels']}, overlapping pairs {len(m['overlaps'])}")

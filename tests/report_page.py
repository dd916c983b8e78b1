"""The report's first page in a real browser: headless Chromium opens report.html at a window
size, and the page's own layout (where the heading, the verdict, the tables and the workflow
drawing are) is read back from the DOM; screenshots for a person to look at.

    python tests/report_page.py results/demo/report.html --out shots/

writes first_page_1400x900.png and first_page_1920x1200.png and prints each layout check.
The test (test_workflow.py) runs the same check on the debug run's report where Chromium is
installed (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WINDOWS = ((1400, 900), (1920, 1200))
# Snakemake's report is a React page: virtual time lets its scripts and Tailwind finish first
_VIRTUAL_TIME_MS = "15000"

# measures the first page once it is drawn, into a <pre id="layout"> that --dump-dom prints
_MEASURE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const box = (element) => {
    if (!element) return null;
    const r = element.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
  };
  const text = document.querySelector("div.prose");
  const heading = text && text.querySelector("h1, h2");
  const verdict = heading && [...text.querySelectorAll("p")].find(
    (paragraph) => heading.compareDocumentPosition(paragraph) & Node.DOCUMENT_POSITION_FOLLOWING);
  const out = document.createElement("pre");
  out.id = "layout";
  out.textContent = JSON.stringify({
    window: {width: window.innerWidth, height: window.innerHeight},
    heading: heading && {text: heading.textContent, box: box(heading)},
    verdict: verdict && {text: verdict.textContent, box: box(verdict)},
    tables: text ? [...text.querySelectorAll("table, img")].map(box) : [],
    drawing: box(document.querySelector("#rulegraph svg, #rulegraph canvas")),
  });
  document.body.appendChild(out);
}, 3000));
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def _chromium(chromium: str, size: tuple[int, int], *args: str) -> str:
    command = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={_VIRTUAL_TIME_MS}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout


def first_page_layout(report: Path, size: tuple[int, int], chromium: str) -> dict:
    """Where the first page's parts are at window `size` (CSS pixels, the window's top-left
    at 0, 0), as measured by Chromium in a copy of `report` with a measuring script."""
    html = report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder:
        measured = Path(folder) / "report.html"
        before, body_end, after = html.rpartition("</body>")  # the last: results may hold pages
        measured.write_text(before + _MEASURE + body_end + after, encoding="utf-8")
        dom = _chromium(chromium, size, "--dump-dom", measured.as_uri())
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.DOTALL)
    if found is None:
        raise RuntimeError(f"the page did not finish drawing in Chromium at {size}")
    return json.loads(
        found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )


def _overlaps(a: dict, b: dict) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def layout_problems(layout: dict) -> list[str]:
    """What a reader of the first page would miss: the heading or the verdict outside the
    window, the workflow drawing over a table or the chart."""
    problems = []
    height = layout["window"]["height"]
    for part in ("heading", "verdict"):
        found = layout[part]
        if found is None:
            problems.append(f"no {part}")
        elif found["box"]["top"] < 0 or found["box"]["bottom"] > height:
            problems.append(f"the {part} is outside the window: {found['box']}")
    drawing = layout["drawing"]
    if drawing is not None:
        problems += [
            f"the workflow drawing {drawing} covers {box}"
            for box in layout["tables"]
            if _overlaps(drawing, box)
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for size in WINDOWS:
        shot = args.out / f"first_page_{size[0]}x{size[1]}.png"
        _chromium(chromium, size, f"--screenshot={shot}", args.report.resolve().as_uri())
        layout = first_page_layout(args.report, size, chromium)
        problems = layout_problems(layout)
        failed |= bool(problems)
        print(f"{size[0]}x{size[1]}: {shot}")
        print(f"  heading {layout['heading']['text']!r} at {layout['heading']['box']}")
        print(f"  verdict {layout['verdict']['text'][:100]!r}... at {layout['verdict']['box']}")
        print(
            "  "
            + (
                "; ".join(problems)
                if problems
                else "heading and verdict in the window, nothing drawn over the tables"
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

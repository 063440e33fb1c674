"""How fast a study's report opens in headless Chromium, and how big it is (issue 23: under
3 s and at most 15 MB for the default study's).

The page's own load time is read from the browser's navigation timing, apart from the
browser's start-up: a copy of the report gets a script that, when the page's load event fires,
writes `loadEventStart - startTime` (the time from the start of navigation until everything
the load waits for, images included, is in) and `domContentLoadedEventEnd - startTime` (the
document parsed and its scripts run) into the page, which `chromium --dump-dom` prints. Each
load is a fresh browser (an empty profile: no cache), `--repeats` times; the wall time of the
same command on an empty page is the browser's start-up, printed beside it.

    python benchmarks/report_load.py path/to/report.html [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Written at the load event (loadEventEnd is not set until its handlers return).
PROBE = (
    "<script>window.addEventListener('load', function () {"
    "var nav = performance.getEntriesByType('navigation')[0];"
    "var pre = document.createElement('pre'); pre.id = 'load-timing';"
    "pre.textContent = JSON.stringify({load_ms: nav.loadEventStart - nav.startTime,"
    " dom_ms: nav.domContentLoadedEventEnd - nav.startTime});"
    "document.body.appendChild(pre);});</script>"
)
TIMING = re.compile(r'<pre id="load-timing">(.*?)</pre>', re.DOTALL)


def chromium() -> str:
    for name in (os.environ.get("EMSIM_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return name
    raise SystemExit("chromium is not installed (apt-get install chromium)")


def open_in_browser(page: Path, profile: Path) -> tuple[float, str]:
    """(wall seconds of the browser's whole run, the DOM it printed)."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.as_uri(),
    ]
    began = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return time.perf_counter() - began, run.stdout


def with_probe(html: str) -> str:
    """The report with the probe as the first script in its head: its handler is registered
    before the page's own script runs, so it times the whole page."""
    return html.replace("<head>", "<head>" + PROBE, 1)


def page_timing(dom: str) -> dict:
    found = TIMING.search(dom)
    if not found:
        raise SystemExit("the page wrote no timing (did it load?)")
    return json.loads(found.group(1).replace("&quot;", '"'))


def measure(report: Path, repeats: int) -> dict:
    html = report.read_text(encoding="utf-8")
    loads, doms, walls, blanks = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="emsim-report-load-") as tmp:
        page, blank = Path(tmp) / "report.html", Path(tmp) / "blank.html"
        # Beside the original, as a reader opens it (relative links keep working).
        page.write_text(with_probe(html), encoding="utf-8")
        blank.write_text(with_probe("<!DOCTYPE html><html><head></head><body></body></html>"))
        for k in range(repeats):
            wall, dom = open_in_browser(page, Path(tmp) / f"profile{k}")
            timing = page_timing(dom)
            loads.append(timing["load_ms"] / 1e3)
            doms.append(timing["dom_ms"] / 1e3)
            walls.append(wall)
            blanks.append(open_in_browser(blank, Path(tmp) / f"blank{k}")[0])
    return {
        "report": str(report),
        "size_mb": round(report.stat().st_size / 1e6, 2),
        "page_load_s": round(statistics.median(loads), 3),
        "page_dom_s": round(statistics.median(doms), 3),
        "page_load_s_each": [round(x, 3) for x in loads],
        "browser_wall_s": round(statistics.median(walls), 3),
        "blank_page_wall_s": round(statistics.median(blanks), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.report.is_file():
        sys.exit(f"report: no such file: {args.report}")
    print(json.dumps(measure(args.report, args.repeats), indent=1))


if __name__ == "__main__":
    main()

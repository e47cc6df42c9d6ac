"""How fast the race page is in headless Chromium: size, first paint, surface switch and slider redraw.

    ravine race -o race                      # the default page: every surface and optimizer, 300 steps, grids
    python benchmarks/race_page.py race/race.html [--loads 3]

Needs Debian's ``chromium`` and Playwright's Python package (the test extra). Times are the page's own
``performance.now()`` figures (``window.timing``): first paint from navigation start; a surface switch from the
select's change to the end of the redraw (decoding the surface's block included); a slider move from the input
event to the end of the redraw. Prints medians and maxima over every load and every surface.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path


def measure(page_file: Path, loads: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("race_page.py: Debian's chromium is needed (apt-get install chromium)")
    figures: dict[str, list[float]] = {"first paint": [], "surface switch": [], "slider redraw": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(page_file.resolve().as_uri())
            page.wait_for_function("window.timing && window.timing.firstPaint !== null")
            figures["first paint"].append(page.evaluate("window.timing.firstPaint"))
            names = page.evaluate("Object.keys(RACE.surfaces)")
            for name in names[1:] + names[:1]:
                page.evaluate("window.timing.lastSwitch = null")
                page.select_option("#surface", name)
                page.wait_for_function("window.timing.lastSwitch !== null")
                figures["surface switch"].append(page.evaluate("window.timing.lastSwitch"))
                for position in range(len(page.evaluate("RACE.multipliers"))):
                    figures["slider redraw"].append(page.evaluate(f"""(() => {{
                        const row = document.querySelector('.row:not(.off)'), t0 = performance.now();
                        const lr = row.querySelector('.lr'); lr.value = '{position}';
                        lr.dispatchEvent(new Event('input')); return performance.now() - t0; }})()"""))
            page.close()
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="a race.html written by ravine race")
    parser.add_argument("--loads", type=int, default=3, help="page loads to time (default 3)")
    args = parser.parse_args()
    print(f"{args.page}: {args.page.stat().st_size / 1e6:.2f} MB")
    for what, values in measure(args.page, args.loads).items():
        print(f"{what}: median {statistics.median(values):.1f} ms, max {max(values):.1f} ms over {len(values)}")


if __name__ == "__main__":
    main()

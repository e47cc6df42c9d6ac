"""The race page: self-contained, and working in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import re
import shutil

import pytest

from ravine.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("race")
    assert main(["race", "--surfaces", "rosenbrock,himmelblau", "--steps", "80", "-o", str(out)]) == 0
    return out / "race.html"


def test_page_is_self_contained(page_file):
    text = page_file.read_text()
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert "Plotly.newPlot" in text and "const RACE = " in text
    for name in ("SGD", "Lion", "Lookahead(Adam)"):
        assert name in text


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "Debian's chromium is needed for the browser tests (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def test_page_plays_pauses_scrubs_and_toggles_in_a_real_browser(browser, page_file, tmp_path):
    errors, requests = [], []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    local = ("file:", "data:", "about:", "blob:")
    page.on("request", lambda r: not r.url.startswith(local) and requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_function("(document.getElementById('fig-rosenbrock') || {}).data !== undefined")
    race = page.evaluate("RACE")
    path_trace = race["surfaces"]["rosenbrock"]["path_traces"][0]
    points = f"document.getElementById('fig-rosenbrock').data[{path_trace}].x.length"
    assert page.inner_text("#counter") == "step 0 / 80" and page.evaluate(points) == 1

    page.click("#play")  # playback advances the counter and the paths
    page.wait_for_timeout(600)
    page.click("#play")  # pause stops them
    paused = page.inner_text("#counter")
    page.wait_for_timeout(400)
    assert page.inner_text("#counter") == paused != "step 0 / 80"
    assert page.evaluate(points) == int(paused.split()[1]) + 1

    page.evaluate("const s = document.getElementById('slider'); s.value = 37; s.dispatchEvent(new Event('input'))")
    x37 = page.evaluate(f"document.getElementById('fig-rosenbrock').data[{path_trace}].x.at(-1)")
    assert page.inner_text("#counter") == "step 37 / 80"
    assert x37 == race["surfaces"]["rosenbrock"]["paths"][0]["x"][37]

    box = page.locator("#fig-rosenbrock .legend .traces").nth(2).bounding_box()  # the first optimizer's entry
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(800)  # plotly applies a single legend click after its 300 ms double-click window
    hidden = page.evaluate("document.getElementById('fig-rosenbrock').data.map(d => d.visible)")
    group = race["surfaces"]["rosenbrock"]
    first = (group["path_traces"][0], group["loss_traces"][0], group["dist_traces"][0])
    assert [hidden[i] for i in first] == ["legendonly"] * 3  # path and both curves go together
    assert hidden[group["path_traces"][1]] is None  # the others stay

    page.select_option("#surface", "himmelblau")
    assert page.is_visible("#fig-himmelblau") and not page.is_visible("#fig-rosenbrock")
    shot = page.screenshot(path=str(tmp_path / "page.png"))
    assert len(set(shot[200:20000])) > 50  # not a blank image
    assert errors == [] and requests == []

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
    assert hidden[group["path_traces"][1]] in (None, True)  # the others stay

    page.select_option("#surface", "himmelblau")
    assert page.is_visible("#fig-himmelblau") and not page.is_visible("#fig-rosenbrock")
    shot = page.screenshot(path=str(tmp_path / "page.png"))
    assert len(set(shot[200:20000])) > 50  # not a blank image
    assert errors == [] and requests == []


def test_the_page_starts_on_a_curated_few_and_switches_families(browser, page_file):
    from ravine.race.families import CURATED, FAMILIES, curated

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(page_file.as_uri())
    page.wait_for_function("(document.getElementById('fig-rosenbrock') || {}).data !== undefined")
    group = page.evaluate("RACE.surfaces.rosenbrock")
    names = [p["name"] for p in group["paths"]]

    def shown():
        visible = page.evaluate("document.getElementById('fig-rosenbrock').data.map(d => d.visible)")
        for traces in ("path_traces", "loss_traces", "dist_traces"):  # path and curves always go together
            assert [visible[i] for i in group[traces]] == [visible[i] for i in group["path_traces"]]
        return [n for n, i in zip(names, group["path_traces"], strict=True) if visible[i] in (None, True)]

    assert "rosenbrock" not in CURATED and shown() == curated("rosenbrock", names)
    assert 3 <= len(shown()) <= 5
    page.select_option("#show", "adaptive")
    assert shown() == [n for n in names if n in FAMILIES["adaptive"]]
    legend = page.locator("#fig-rosenbrock .legendtext").all_text_contents()
    assert any(t.startswith("SGD (lr") for t in legend)  # hidden ones stay in the legend, one click away
    page.select_option("#show", "all")
    assert shown() == names
    page.close()


def test_every_contestant_has_a_family_and_a_colour_of_its_own():
    from ravine.race import CONTESTANTS
    from ravine.race.colours import MINIMUM, START, colour_of
    from ravine.race.families import FAMILIES, family_of

    assert sorted(n for names in FAMILIES.values() for n in names) == sorted(CONTESTANTS)
    assert all(family_of(n) for n in CONTESTANTS)
    colours = [colour_of(n).lower() for n in CONTESTANTS]
    assert len(set(colours)) == len(colours)
    reserved = {MINIMUM["colour"], MINIMUM["edge"], START["colour"], START["edge"], "#ffd700", "#7f7f7f"}
    assert not set(colours) & {c.lower() for c in reserved}


def test_the_png_and_the_gif_draw_each_optimizer_in_its_page_colour(tmp_path):
    from PIL import Image

    from ravine.plotting import animate_race, plot_race
    from ravine.race import SURFACES, race
    from ravine.race.colours import colour_of

    surface = SURFACES["booth"]
    runs = race(surface, ["Lion", "Adam"], {"Lion": 0.1, "Adam": 0.5}, 40, surface.start)
    plot_race(surface, runs, tmp_path / "booth.png")
    animate_race(surface, runs, tmp_path / "booth.gif", frames=5, hold_s=0)
    png = Image.open(tmp_path / "booth.png").convert("RGB")
    gif = Image.open(tmp_path / "booth.gif")
    assert gif.size[0] >= 800
    gif.seek(gif.n_frames - 1)
    gif = gif.convert("RGB")
    for run in runs:
        rgb = tuple(int(colour_of(run.name)[i:i + 2], 16) for i in (1, 3, 5))
        assert png.getcolors(1 << 20) and rgb in {c for _, c in png.getcolors(1 << 20)}, run.name

        def near(colour, rgb=rgb):
            return max(abs(a - b) for a, b in zip(colour, rgb, strict=True)) <= 12

        assert any(near(c) for _, c in gif.getcolors(1 << 20)), run.name  # GIF colours are quantised


def test_log_axes_use_powers_of_ten_and_the_pause_glyph_is_in_debians_fonts(page_file):
    text = page_file.read_text()
    assert '"exponentformat":"power"' in text.replace(" ", "")
    assert "⏸" not in text and "‖ pause" in text

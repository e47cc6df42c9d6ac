"""The race page: self-contained, drawn from the real optimizers' runs, explorable, fast and readable at every
width, in a real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch

from ravine.cli import main
from ravine.race import SURFACES
from ravine.race.explore import LR_MULTIPLIERS, cells_of, explore, knob_of, page_noise
from ravine.race.run import tuned_lrs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
STEPS = 80
POSITION = 3 / 65535  # the packed positions' resolution, in window widths
GAP = 32 / 65535  # and that of log10(f − f*)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("race")
    assert main(["race", "--surfaces", "rosenbrock,himmelblau", "--steps", str(STEPS), "-o", str(out)]) == 0
    return out / "race.html"


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "Debian's chromium is needed for the browser tests (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def open_page(browser, url, width=1400, height=900):
    """A page at ``url``, loaded and painted, recording errors and every request that leaves the machine."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.errors, page.requests = [], []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    local = ("file:", "data:", "about:", "blob:", "http://127.0.0.1:")
    page.on("request", lambda r: not r.url.startswith(local) and page.requests.append(r.url))
    page.goto(url)
    page.wait_for_function("window.timing && window.timing.firstPaint !== null")
    return page


def shown_run(page, name):
    """The run the page draws for ``name`` now, as plain lists."""
    return page.evaluate(f"""(() => {{ const d = DATA[S.surface];
        const c = d.index.contestants.find((c) => c.name === {json.dumps(name)}); const r = runOf(d, c);
        return {{n: r.n, at: r.at, x: [...r.x], y: [...r.y], gap: [...r.gap],
                 g: r.g && [[...r.g.angle], [...r.g.log]], m: r.m && [[...r.m.angle], [...r.m.log]]}}; }})()""")


def close_to_run(shown, positions, losses, surface):
    """The page's run matches a Python run to the packing's resolution."""
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    n = shown["n"]
    w, h = x1 - x0, y1 - y0  # positions are stored within a window-width around the window (beyond: off the page)
    xs, ys = positions[:n, 0].clamp(x0 - w, x1 + w).tolist(), positions[:n, 1].clamp(y0 - h, y1 + h).tolist()
    assert max(abs(a - b) for a, b in zip(shown["x"], xs, strict=True)) <= POSITION * w
    assert max(abs(a - b) for a, b in zip(shown["y"], ys, strict=True)) <= POSITION * h
    gap = torch.log10((losses[:n] - surface.f_min).clamp_min(0) + 1e-12).tolist()
    assert max(abs(a - b) for a, b in zip(shown["gap"], gap, strict=True)) <= GAP


def test_page_is_self_contained_and_never_leaves(page_file):
    text = page_file.read_text()
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert not re.search(r"https?://", text), "no address to fetch or to send anyone to"
    assert "<a " not in text and "<form" not in text and "window.open" not in text
    assert "⏸" not in text and "‖ pause" in text  # U+2016 is in Debian's default fonts; U+23F8 is not


def test_playback_draws_the_races_runs(browser, page_file):
    page = open_page(browser, page_file.as_uri())
    data = json.loads((page_file.parent / "race.json").read_text())["surfaces"]["rosenbrock"]["paths"]
    assert page.inner_text("#counter") == f"step 0 / {STEPS}"
    page.click("#play")  # playback advances the counter
    page.wait_for_timeout(600)
    page.click("#play")  # pause stops it
    paused = page.inner_text("#counter")
    page.wait_for_timeout(300)
    assert page.inner_text("#counter") == paused != f"step 0 / {STEPS}"
    page.evaluate("const s = document.getElementById('slider'); s.value = 37; s.dispatchEvent(new Event('input'))")
    assert page.inner_text("#counter") == f"step 37 / {STEPS}"
    surface = SURFACES["rosenbrock"]
    for name in ("SGD", "Adam", "Lion"):  # the page's default runs are the race's, to the packing's resolution
        run = data[name]
        close_to_run(shown_run(page, name), torch.tensor([run["x"], run["y"]], dtype=torch.float64).T,
                     torch.tensor(run["loss"], dtype=torch.float64), surface)
    hover = page.evaluate("""(() => { const d = DATA[S.surface];
        const c = d.index.contestants.find((c) => c.name === "Adam");
        const r = runOf(d, c), f = frame(d, document.getElementById('plot').clientWidth,
                                         document.getElementById('plot').clientHeight);
        return hoverAt(f.px(r.x[20]), f.py(r.y[20])); })()""")
    assert page.is_visible("#tip") and hover["text"] == page.inner_text("#tip")
    # whichever point is nearest the pointer, the label shows that run's own step, position and f − f*
    expected = data[hover["name"]]
    step = hover["step"]
    assert hover["gap"] == pytest.approx(math.log10(expected["loss"][step] - surface.f_min + 1e-12), abs=GAP)
    assert hover["x"] == pytest.approx(expected["x"][step], abs=POSITION * 4)
    assert f"{hover['name']} · lr " in hover["text"] and f" · step {step}\n" in hover["text"]
    # the log axis reads in powers of ten, never SI prefixes such as "1n"; numbers keep plain exponents
    assert page.evaluate("[power(-6), power(3), power(0), num(1e-9), num(0.0123), num(12345)]") == [
        "10⁻⁶", "10³", "10⁰", "1.00e-9", "0.0123", "1.23e+4"]
    page.select_option("#surface", "himmelblau")
    page.wait_for_function("S.surface === 'himmelblau' && DATA.himmelblau")
    assert "Himmelblau" in page.inner_text("#note")
    assert page.errors == [] and page.requests == []
    page.close()


def test_sliders_pick_runs_the_real_classes_computed_and_redraw_within_100_ms(browser, page_file):
    page = open_page(browser, page_file.as_uri())
    surface = SURFACES["rosenbrock"]
    lr = tuned_lrs()["rosenbrock"]["Adam"]
    grid = explore(surface, "Adam", lr, surface.start, STEPS, page_noise(surface, 0.0))
    knob = knob_of("Adam")
    for i, j in ((4, 0), (0, 3), (1, 1)):
        ms = page.evaluate(f"""(() => {{ const row = document.querySelector('.row[data-name="Adam"]');
            const t0 = performance.now();
            const lr = row.querySelector('.lr'); lr.value = '{i}'; lr.dispatchEvent(new Event('input'));
            const b = row.querySelector('.b'); b.value = '{j}'; b.dispatchEvent(new Event('input'));
            return performance.now() - t0; }})()""")
        assert ms <= 100, f"two slider moves took {ms:.0f} ms to redraw"
        cell = i * len(knob.values) + j
        assert cells_of("Adam", lr)[cell] == {"lr": lr * LR_MULTIPLIERS[i], "betas": (knob.values[j], 0.999)}
        close_to_run(shown_run(page, "Adam"), grid.positions[:, cell, 0], grid.losses[:, cell, 0], surface)
        row = page.locator('.row[data-name="Adam"]')
        assert float(row.locator(".lr-out").inner_text()) == pytest.approx(lr * LR_MULTIPLIERS[i], rel=0.05)
        assert float(row.locator(".b-out").inner_text()) == knob.values[j]
    # A run that diverges is named so in its row, at the step the Python run diverged at
    sgd = explore(surface, "SGD", tuned_lrs()["rosenbrock"]["SGD"], surface.start, STEPS, page_noise(surface, 0.0))
    top = len(LR_MULTIPLIERS) - 1
    assert sgd.diverged_at[top, 0] > 0  # SGD at 10× its tuned lr leaves the valley
    page.evaluate(f"""(() => {{ const lr = document.querySelector('.row[data-name="SGD"] .lr');
        lr.value = '{top}'; lr.dispatchEvent(new Event('input')); }})()""")
    status = page.locator('.row[data-name="SGD"] .status').inner_text()
    assert status == f"diverged at step {int(sgd.diverged_at[top, 0])}"
    # The noise toggle shows the seeded noisy race (lr at the race's own; the lr sliders rest)
    page.check("#noise")
    noisy = shown_run(page, "Adam")
    middle = LR_MULTIPLIERS.index(1.0) * len(knob.values) + 1
    close_to_run(noisy, grid.positions[:, middle, 1], grid.losses[:, middle, 1], surface)
    assert page.locator('.row[data-name="Adam"] .lr').is_disabled()
    assert page.errors == []
    page.close()


def test_arrows_show_the_optimizers_own_gradient_moment_and_step(browser, page_file):
    page = open_page(browser, page_file.as_uri())
    page.select_option("#arrows", "Adam")
    page.evaluate("show(10)")
    shown = shown_run(page, "Adam")
    # Adam by hand: the same class stepping on one point, its state read directly
    import ravine

    surface = SURFACES["rosenbrock"]
    xy = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
    optimizer = ravine.Adam([xy], lr=tuned_lrs()["rosenbrock"]["Adam"])
    for _ in range(11):
        optimizer.zero_grad()
        surface(xy[0], xy[1]).backward()
        grad = xy.grad.clone()
        optimizer.step()
    moment = optimizer.state[xy]["exp_avg"]
    for (angle, log), vector in ((shown["g"], grad), (shown["m"], moment)):
        assert angle[10] == pytest.approx(math.atan2(vector[1], vector[0]), abs=2e-3)
        assert log[10] == pytest.approx(math.log10(vector.norm().item()), abs=0.01)
    text = page.inner_text("#readout")
    assert text.startswith("Adam, step 10 → 11:") and "gradient |∇f|" in text and "first moment |m|" in text
    shown_m = float(re.search(r"\|m\| (\S+)", text).group(1))
    assert shown_m == pytest.approx(moment.norm().item(), rel=0.06)  # two digits
    assert page.errors == []
    page.close()


def test_the_3d_view_draws_the_surface_and_turns(browser, page_file):
    page = open_page(browser, page_file.as_uri())
    page.evaluate("show(40)")
    flat = page.locator("#plot").screenshot()
    page.select_option("#view", "3d")
    turned_before = page.locator("#plot").screenshot()
    assert turned_before != flat
    box = page.locator("#plot").bounding_box()
    page.mouse.move(box["x"] + 200, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 220, steps=5)
    page.mouse.up()
    assert page.evaluate("S.yaw") != pytest.approx(-0.7)
    assert page.locator("#plot").screenshot() != turned_before
    assert page.errors == []
    page.close()


def test_the_url_hash_reproduces_a_view(browser, page_file):
    page = open_page(browser, page_file.as_uri())
    page.select_option("#surface", "himmelblau")
    page.wait_for_function("S.surface === 'himmelblau'")
    page.select_option("#show", "adaptive")
    page.evaluate("""(() => { const lr = document.querySelector('.row[data-name="RMSprop"] .lr');
        lr.value = '3'; lr.dispatchEvent(new Event('input')); show(25); })()""")
    page.check("#noise")
    page.select_option("#view", "3d")
    page.select_option("#arrows", "Adam")
    page.wait_for_timeout(300)  # the hash is written 80 ms after the last change
    url = page.url
    assert "#" in url
    state = page.evaluate("({s: S.surface, on: [...S.shown].sort(), cells: S.cells.RMSprop, t: S.step, "
                          "noise: S.noise, view: S.view, arrows: S.arrows})")
    again = open_page(browser, url)
    assert again.evaluate("({s: S.surface, on: [...S.shown].sort(), cells: S.cells.RMSprop, t: S.step, "
                          "noise: S.noise, view: S.view, arrows: S.arrows})") == state
    assert again.input_value("#show") == "adaptive" and again.inner_text("#counter").startswith("step 25")
    assert page.errors == [] and again.errors == []
    page.close()
    again.close()


def test_the_page_starts_on_a_curated_few_and_switches_families(browser, page_file):
    from ravine.race.families import CURATED, FAMILIES, curated

    page = open_page(browser, page_file.as_uri())
    names = page.evaluate("DATA.rosenbrock.index.contestants.map((c) => c.name)")

    def shown():
        return [n for n in names if page.is_checked(f'.row[data-name="{n}"] .on')]

    assert "rosenbrock" not in CURATED and shown() == curated("rosenbrock", names)
    assert 3 <= len(shown()) <= 5
    page.select_option("#show", "adaptive")
    assert shown() == [n for n in names if n in FAMILIES["adaptive"]]
    page.select_option("#show", "all")
    assert shown() == names
    page.uncheck('.row[data-name="SGD"] .on')  # one optimizer at a time, from its row
    assert "SGD" not in shown() and page.input_value("#show") == "custom"
    page.close()


def _boxes(page):
    return page.evaluate("""(() => Object.fromEntries(['h1', '#controls', '#plot', '#curves', '#rows', '#note']
        .map((s) => { const r = document.querySelector(s).getBoundingClientRect();
                      return [s, [r.left, r.top, r.right, r.bottom]]; })))()""")


@pytest.mark.parametrize("width", [390, 1024, 1440])
def test_readable_at_phone_laptop_and_desktop_widths(browser, page_file, tmp_path, width):
    page = open_page(browser, page_file.as_uri(), width=width, height=900)
    page.evaluate("show(60)")
    page.screenshot(path=str(tmp_path / f"race-{width}.png"), full_page=True)
    boxes = _boxes(page)
    for a, (l1, t1, r1, b1) in boxes.items():
        assert r1 <= width + 0.5, f"{a} runs off the page at {width} px"
        for b, (l2, t2, r2, b2) in boxes.items():
            if a < b:
                overlap = min(r1, r2) - max(l1, l2) > 1 and min(b1, b2) - max(t1, t2) > 1
                assert not overlap, f"{a} and {b} overlap at {width} px"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width == 390:  # stacked: the plot first, the curves and the rows below it
        assert boxes["#curves"][1] >= boxes["#plot"][3] and boxes["#plot"][2] - boxes["#plot"][0] >= 330
    else:  # side by side
        assert boxes["#curves"][0] >= boxes["#plot"][2]
    assert page.errors == []
    page.close()


def test_every_contour_is_drawn_as_a_line_the_innermost_included():
    from ravine.race.pack import Packer, _background

    for surface in SURFACES.values():
        packer = Packer()
        background = _background(packer, surface)
        innermost = min(level for level, *_ in background["contours"])
        lines = [n for level, n, *_ in background["contours"] if level == innermost]
        assert lines and min(lines) >= 4, surface.name  # closed loops around the minima, stroked as lines


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
    from ravine.race import race
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


@pytest.fixture(scope="module")
def default_page(tmp_path_factory):
    """The page ``ravine race`` writes with its defaults: every surface, every optimizer, 300 steps, with the
    slider grids."""
    out = tmp_path_factory.mktemp("default-race")
    assert main(["race", "-o", str(out)]) == 0
    return out / "race.html"


def test_the_default_page_is_under_6_mb_paints_within_2_s_and_switches_within_300_ms(browser, default_page):
    size = default_page.stat().st_size
    assert size <= 6e6, f"the page is {size / 1e6:.2f} MB"
    page = open_page(browser, default_page.as_uri())
    first = page.evaluate("window.timing.firstPaint")
    assert first <= 2000, f"first paint after {first:.0f} ms"
    switches = []
    names = list(SURFACES)
    for name in names[1:] + names[:1]:  # the first is already shown: come back to it last
        page.select_option("#surface", name)
        page.wait_for_function(f"S.surface === {json.dumps(name)} && window.timing.lastSwitch !== null")
        switches.append(page.evaluate("window.timing.lastSwitch"))
        page.evaluate("window.timing.lastSwitch = null")
    assert max(switches) <= 300, f"surface switches took {switches} ms"
    assert page.errors == [] and page.requests == []
    page.close()

"""Live mode: the server's validation, limits and Host check, and a click in a real browser."""

from __future__ import annotations

import http.client
import json
import math
import threading

import pytest

from ravine.race import SURFACES, race
from ravine.race.page import render_page
from ravine.race.run import RaceSettings, tuned_lrs
from ravine.race.serve import compute, make_server, parse_request


def _page() -> bytes:
    surface = SURFACES["booth"]
    lrs = tuned_lrs()["booth"]
    names = ["Adam", "Lion"]
    trajectories = race(surface, names, {n: lrs[n] for n in names}, 40, surface.start)
    return render_page({"booth": (surface, trajectories)}, 40, live=True).encode()


@pytest.fixture(scope="module")
def server():
    instance = make_server(_page(), port=0)
    thread = threading.Thread(target=instance.serve_forever, daemon=True)
    thread.start()
    yield instance
    instance.shutdown()
    instance.server_close()


def get(server, path, host=None):
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def _no_nan(text: bytes):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"JSON holds {name}"))


def test_serves_the_page_and_recomputes_with_the_real_optimizers(server):
    status, body = get(server, "/")
    assert status == 200 and b"const RACE = " in body and b"plotly_click" in body
    status, body = get(server, "/api/race?surface=booth&start=2.5,-4&steps=25&optimizers=Adam,Lion&lr_scale=2")
    assert status == 200
    data = _no_nan(body)
    assert [p["name"] for p in data["paths"]] == ["Adam", "Lion"]
    adam = data["paths"][0]
    assert (adam["x"][0], adam["y"][0]) == (2.5, -4.0) and len(adam["x"]) == 26
    expected = race(SURFACES["booth"], ["Adam"], {"Adam": 2 * tuned_lrs()["booth"]["Adam"]}, 25, (2.5, -4.0))[0]
    assert adam["x"] == expected.xs and adam["lr"] == pytest.approx(expected.lr)


def test_a_diverging_race_never_emits_nan(server):
    status, body = get(server, "/api/race?surface=rosenbrock&start=-2,3&steps=50&optimizers=SGD&lr_scale=1000")
    assert status == 200
    _no_nan(body)


@pytest.mark.parametrize(("query", "message"), [
    ("surface=nowhere", "surface must be one of"),
    ("surface=booth&start=1", "start must be x,y"),
    ("surface=booth&start=100,0", "start must lie in the surface's window"),
    ("surface=booth&start=nan,0", "start must lie in the surface's window"),
    ("surface=booth&steps=5000", "steps must be a finite number in [1, 1000]"),
    ("surface=booth&steps=2.5", "steps must be an integer"),
    ("surface=booth&lr_scale=inf", "lr_scale must be a finite number"),
    ("surface=booth&lr_scale=abc", "lr_scale must be a number"),
    ("surface=booth&optimizers=Adam,Adam", "optimizers must be distinct names"),
    ("surface=booth&optimizers=Adamm", "optimizers must be distinct names"),
    ("surface=booth&evil=1", "unknown field(s): evil"),
])
def test_bad_input_gets_400_with_the_reason(server, query, message):
    status, body = get(server, f"/api/race?{query}")
    assert status == 400 and message in json.loads(body)["error"]


def test_foreign_host_gets_403_and_unknown_paths_404(server):
    assert get(server, "/", host="evil.example:80")[0] == 403
    assert get(server, "/api/race?surface=booth", host="attacker.test")[0] == 403
    assert get(server, "/secrets")[0] == 404


def test_time_limit_and_one_computation_at_a_time():
    slow = make_server(b"page", port=0, time_limit=0.0)
    thread = threading.Thread(target=slow.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = get(slow, "/api/race?surface=booth&steps=10")
        assert status == 503 and "ran out of time" in json.loads(body)["error"]
        cells = slow.RequestHandlerClass.do_GET.__closure__  # the handler's single-computation lock
        busy = next(c.cell_contents for c in cells if hasattr(c.cell_contents, "acquire"))
        with busy:
            status, body = get(slow, "/api/race?surface=booth&steps=10")
        assert status == 429
    finally:
        slow.shutdown()
        slow.server_close()


def test_live_races_follow_the_command_lines_lr_mode_noise_and_seed():
    settings = RaceSettings("shared", 0.05, noise=0.5, seed=7)
    server = make_server(b"page", port=0, settings=settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = get(server, "/api/race?surface=booth&start=1,1&steps=15&optimizers=SGD,Adam&lr_scale=2")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    expected = race(SURFACES["booth"], ["SGD", "Adam"], {"SGD": 0.1, "Adam": 0.1}, 15, (1.0, 1.0), 0.5, 7)
    paths = json.loads(body)["paths"]
    assert [p["x"] for p in paths] == [t.xs for t in expected]
    assert [p["label"] for p in paths] == ["SGD (lr 0.1)", "Adam (lr 0.1)"]
    request = parse_request({"surface": ["booth"], "steps": ["15"], "optimizers": ["SGD"]})
    default = compute(request, RaceSettings("default"))["paths"][0]
    assert default["lr"] == pytest.approx(1e-3)  # SGD's own default lr


def _hover_loss(page, surface, trace, point):
    """The loss the hover label shows for ``point`` of path trace ``trace``."""
    page.evaluate(f"Plotly.Fx.unhover('fig-{surface}')")
    page.wait_for_selector(f"#fig-{surface} .hovertext", state="detached")
    page.evaluate(f"Plotly.Fx.hover('fig-{surface}', [{{curveNumber: {trace}, pointNumber: {point}}}])")
    page.wait_for_selector(f"#fig-{surface} .hovertext")
    texts = page.locator(f"#fig-{surface} .hovertext").all_text_contents()
    return float(texts[0].split("loss")[1].strip().replace("−", "-"))


def test_a_click_on_the_surface_races_from_there_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright
    from test_race_page import ARGS, CHROMIUM

    assert CHROMIUM, "Debian's chromium is needed for the browser tests (.ci/run installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("(document.getElementById('fig-booth') || {}).data !== undefined")
        box = page.locator("#fig-booth .nsewdrag").first.bounding_box()
        with page.expect_response(lambda r: "/api/race" in r.url) as response:
            page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)
        assert response.value.status == 200
        served = response.value.json()
        page.wait_for_function("document.getElementById('status').textContent.startsWith('started at')")
        start = page.evaluate("[RACE.surfaces.booth.paths[0].x[0], RACE.surfaces.booth.paths[0].y[0]]")
        assert start[0] == pytest.approx(5.0, abs=1.0) and start[1] == pytest.approx(5.0, abs=1.0)
        assert all(math.isfinite(v) for v in start) and errors == []

        # Hover and legend show the new race, not the one the page was built with.
        page.evaluate("pause(); show(RACE.steps)")
        trace = page.evaluate("RACE.surfaces.booth.path_traces[0]")
        for point in (0, 10, 40):
            assert _hover_loss(page, "booth", trace, point) == pytest.approx(served["paths"][0]["loss"][point],
                                                                             rel=1e-3)
        legend = page.locator("#fig-booth .legendtext").all_text_contents()
        assert all(p["label"] in legend for p in served["paths"])

        # Releasing the lr slider races again from the same start; the legend shows the new lrs.
        with page.expect_response(lambda r: "/api/race" in r.url) as response:
            page.evaluate("const s = document.getElementById('lr-scale'); s.value = '1'; "
                          "s.dispatchEvent(new Event('change'))")
        served = response.value.json()
        page.wait_for_function("RACE.surfaces.booth.paths[0].lr === " + json.dumps(served["paths"][0]["lr"]))
        assert served["paths"][0]["lr"] == pytest.approx(10 * tuned_lrs()["booth"]["Adam"])
        assert served["paths"][0]["x"][0] == pytest.approx(start[0])
        page.wait_for_timeout(100)
        legend = page.locator("#fig-booth .legendtext").all_text_contents()
        assert all(p["label"] in legend for p in served["paths"])
        page.evaluate("pause(); show(RACE.steps)")
        assert _hover_loss(page, "booth", trace, 20) == pytest.approx(served["paths"][0]["loss"][20], rel=1e-3)
        assert errors == []
        browser.close()

"""Live mode: the server's validation, limits and Host check, and clicks, sliders and typed surfaces in a real
browser."""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import quote

import pytest

from ravine.race import SURFACES
from ravine.race.pack import race_and_pack, unpack_run
from ravine.race.page import render_page
from ravine.race.run import RaceSettings, descend, tuned_lrs
from ravine.race.serve import compute, make_server, parse_request

POSITION = 3 / 65535
GAP = 32 / 65535


def _page() -> bytes:
    surface = SURFACES["booth"]
    lrs = tuned_lrs()["booth"]
    names = ["Adam", "Lion", "SGD"]
    _, packed = race_and_pack(surface, names, {n: lrs[n] for n in names}, 40, surface.start)
    return render_page({"booth": packed}, 40, live=True).encode()


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


def runs(*items) -> str:
    return quote(json.dumps(list(items)))


def run_of(index, name):
    contestant = next(c for c in index["contestants"] if c["name"] == name)
    return contestant, unpack_run(index, contestant["runs"][0])


def assert_same_run(unpacked, descent, surface):
    """A served run equals the real optimizer's, to the packing's resolution (16 bits over 3 window widths)."""
    import torch

    (x0, x1), _ = surface.x_range, surface.y_range
    n = unpacked["n"]
    assert abs(unpacked["x"] - descent.positions[:n, 0, 0, 0].numpy()).max() <= POSITION * (x1 - x0)
    gap = torch.log10((descent.losses[:n, 0, 0] - surface.f_min).clamp_min(0) + 1e-12).numpy()
    assert abs(unpacked["gap"] - gap).max() <= GAP


def test_serves_the_page_and_recomputes_with_the_real_optimizers(server):
    status, body = get(server, "/")
    assert status == 200 and b'id="race-data"' in body and b"function rerun(" in body
    query = runs({"name": "Adam", "lr_scale": 2, "beta1": 0.5, "beta2": 0.99, "noise": 0.3}, {"name": "SGD"})
    status, body = get(server, f"/api/race?surface=booth&start=2.5,-4&steps=25&runs={query}")
    assert status == 200
    index = _no_nan(body)
    assert index["live"] and [c["name"] for c in index["contestants"]] == ["Adam", "SGD"]
    adam, unpacked = run_of(index, "Adam")
    lr = 2 * tuned_lrs()["booth"]["Adam"]
    assert adam["settings"] == {"lr": lr, "lr_scale": 2, "beta1": 0.5, "beta2": 0.99, "noise": 0.3}
    assert (unpacked["x"][0], unpacked["y"][0]) == pytest.approx((2.5, -4.0), abs=POSITION * 20)
    expected = descend(SURFACES["booth"], "Adam", [{"lr": lr, "betas": (0.5, 0.99)}], [(2.5, -4.0)], 25, 0.3)
    assert unpacked["n"] == 26
    assert_same_run(unpacked, expected, SURFACES["booth"])
    sgd, _ = run_of(index, "SGD")
    assert sgd["settings"]["beta1"] is None and sgd["settings"]["noise"] == 0.0


def test_a_diverging_race_never_emits_nan(server):
    query = runs({"name": "SGD", "lr_scale": 1000})
    status, body = get(server, f"/api/race?surface=rosenbrock&start=-2,3&steps=50&runs={query}")
    assert status == 200
    _, unpacked = run_of(_no_nan(body), "SGD")
    assert unpacked["diverged_at"] is not None and unpacked["n"] == unpacked["diverged_at"]


def test_a_typed_surface_races_on_its_own_window(server):
    query = f"surface=typed&expr={quote('(x - 1)^2 + 10*(y + 0.5)^2')}&window=-3,3,-2,2&steps=200&" \
            f"runs={runs({'name': 'Adam', 'lr_scale': 100})}"
    status, body = get(server, f"/api/race?{query}")
    assert status == 200
    index = _no_nan(body)
    assert index["typed"] and index["window"] == [-3, 3, -2, 2]
    assert index["formula"] == "(x - 1)^2 + 10*(y + 0.5)^2"
    assert index["minima"][0] == pytest.approx([1, -0.5], abs=0.02) and index["contours"]
    _, unpacked = run_of(index, "Adam")
    assert (unpacked["x"][-1], unpacked["y"][-1]) == pytest.approx((1, -0.5), abs=0.01)


@pytest.mark.parametrize(("query", "message"), [
    ("surface=nowhere", "surface must be one of"),
    ("surface=booth&start=1", "start must be x,y"),
    ("surface=booth&start=100,0", "start must lie in the surface's window"),
    ("surface=booth&start=nan,0", "start must lie in the surface's window"),
    ("surface=booth&steps=5000", "steps must be a finite number in [1, 1000]"),
    ("surface=booth&steps=2.5", "steps must be an integer"),
    ("surface=booth&evil=1", "unknown field(s): evil"),
    ("surface=booth&runs=[", "runs must be a JSON list"),
    ("surface=booth&runs=[]", "runs must be a list of 1 to"),
    (f"surface=booth&runs={runs({'name': 'Adam'}, {'name': 'Adam'})}", "each run needs a distinct name"),
    (f"surface=booth&runs={runs({'name': 'Adamm'})}", "each run needs a distinct name"),
    (f"surface=booth&runs={runs({'name': 'Adam', 'lr': 1})}", "unknown run field(s): lr"),
    (f"surface=booth&runs={runs({'name': 'Adam', 'lr_scale': 1e9})}", "lr_scale must be a finite number in"),
    (f"surface=booth&runs={runs({'name': 'Adam', 'lr_scale': 'big'})}", "lr_scale must be a finite number in"),
    (f"surface=booth&runs={runs({'name': 'SGD', 'beta1': 0.9})}", "SGD has no momentum or β₁ to set"),
    (f"surface=booth&runs={runs({'name': 'Nesterov', 'beta1': 0.0})}", "Nesterov's momentum must be"),
    (f"surface=booth&runs={runs({'name': 'Adam', 'beta1': 1.0})}", "Adam's β₁ must be a finite number in [0, 1)"),
    (f"surface=booth&runs={runs({'name': 'Momentum', 'beta2': 0.9})}", "Momentum has no β₂ to set"),
    (f"surface=booth&runs={runs({'name': 'Adam', 'noise': -1})}", "noise must be a finite number in"),
    ("surface=typed&expr=x%2By&window=1,2", "window must be x0,x1,y0,y1"),
    ("surface=typed&expr=x%2By&window=2,1,0,1", "the window must be finite numbers"),
    ("surface=typed&expr=2x&window=-1,1,-1,1", "expr: expected an operator at position 2"),
    ("surface=typed&expr=log(x)&window=-1,1,-1,1", "expr: f is not finite at (x, y) = (-1, -1)"),
    ("surface=typed&expr=__import__&window=-1,1,-1,1", "expr: unknown name '__import__'"),
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
        query = runs({"name": "SGD", "lr_scale": 2}, {"name": "Adam", "lr_scale": 2})
        status, body = get(server, f"/api/race?surface=booth&start=1,1&steps=15&runs={query}")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    index = json.loads(body)
    for name, cell in (("SGD", {"lr": 0.1}), ("Adam", {"lr": 0.1, "betas": (0.9, 0.999)})):
        contestant, unpacked = run_of(index, name)
        assert contestant["settings"]["lr"] == 0.1 and contestant["settings"]["noise"] == 0.5
        assert_same_run(unpacked, descend(SURFACES["booth"], name, [cell], [(1.0, 1.0)], 15, 0.5, 7),
                        SURFACES["booth"])
    request = parse_request({"surface": ["booth"], "steps": ["15"], "runs": ['[{"name": "SGD"}]']})
    default = compute(request, RaceSettings("default"))["contestants"][0]
    assert default["settings"]["lr"] == pytest.approx(1e-3)  # SGD's own default lr


def _hover(page, name, step):
    """What the hover label says at ``name``'s point ``step``."""
    return page.evaluate(f"""(() => {{ const d = DATA[S.surface];
        const c = d.index.contestants.find((c) => c.name === {json.dumps(name)}); const r = runOf(d, c);
        const box = document.getElementById('plot'), f = frame(d, box.clientWidth, box.clientHeight);
        return hoverAt(f.px(r.x[{step}]), f.py(r.y[{step}])); }})()""")


def test_clicks_sliders_and_typed_surfaces_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright
    from test_race_page import ARGS, CHROMIUM, open_page

    assert CHROMIUM, "Debian's chromium is needed for the browser tests (.ci/run installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = open_page(browser, f"http://127.0.0.1:{server.server_address[1]}/", width=1400)
        page.evaluate("S.shown = new Set(['Adam']); refresh()")  # one path: hover finds its points
        box = page.locator("#plot").bounding_box()
        with page.expect_response(lambda r: "/api/race" in r.url) as response:
            page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)
        assert response.value.status == 200
        served = response.value.json()
        page.wait_for_function("document.getElementById('status').textContent.startsWith('started at')")
        _, adam = run_of(served, "Adam")
        assert adam["x"][0] == pytest.approx(5.0, abs=1.5) and adam["y"][0] == pytest.approx(5.0, abs=1.5)

        # Hover shows the new race, not the one the page was built with
        page.evaluate("pause(); show(RACE.steps)")
        for step in (0, 10, 40):
            hover = _hover(page, "Adam", step)
            assert hover["name"] == "Adam" and hover["gap"] == pytest.approx(adam["gap"][hover["step"]], abs=1e-9)
            assert hover["x"] == pytest.approx(adam["x"][hover["step"]], abs=1e-9)

        # Releasing a row's β₁ slider races again from the same start with that β₁
        with page.expect_response(lambda r: "/api/race" in r.url) as response:
            page.evaluate("""(() => { const b = document.querySelector('.row[data-name="Adam"] .b');
                b.value = '0.5'; b.dispatchEvent(new Event('input'));
                b.dispatchEvent(new Event('change')); })()""")
        served = response.value.json()
        contestant, again = run_of(served, "Adam")
        assert contestant["settings"]["beta1"] == 0.5
        assert (again["x"][0], again["y"][0]) == pytest.approx((adam["x"][0], adam["y"][0]), abs=1e-9)
        page.wait_for_function("DATA.booth && DATA.booth.index.contestants[0].settings.beta1 === 0.5")
        page.evaluate("pause(); show(20)")
        assert _hover(page, "Adam", 20)["gap"] == pytest.approx(again["gap"][20], abs=1e-9)
        assert page.locator('.row[data-name="Adam"] .b-out').inner_text() == "0.5"

        # A typed surface becomes a surface of the page; a bad one is one line of error
        page.fill("#expr", "x^2 + 10*sin(y)")
        with page.expect_response(lambda r: "/api/race" in r.url) as response:
            page.click("#race-typed")
        assert response.value.status == 200
        page.wait_for_function("S.surface === 'typed'")
        assert "Typed surface: x^2 + 10*sin(y)" in page.inner_text("#surface")
        page.fill("#expr", "2x + y")
        page.click("#race-typed")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('error')")
        assert "expected an operator at position 2" in page.inner_text("#status")
        # the one error the console saw is that refused request's status
        assert [e for e in page.errors if "status of 400" not in e] == [] and page.requests == []
        browser.close()

"""``ravine race --serve``: the race page, live. Click to start anywhere, move a row's sliders, or type a
surface; the real optimizer classes recompute.

A standard-library ``ThreadingHTTPServer`` bound to 127.0.0.1 serves the page and one JSON endpoint,
``GET /api/race?surface=…&start=x,y&steps=…&runs=[…][&expr=…&window=x0,x1,y0,y1]``, where ``runs`` is a JSON list
of ``{"name", "lr_scale", "beta1", "beta2", "noise"}`` (all but the name optional) and ``surface=typed`` races
the expression ``expr`` (:mod:`ravine.race.expression`) over ``window``. The answer is the surface packed as the
page reads it (:func:`ravine.race.pack.pack_surface`). Every field is checked against an allow-list or a range
(400 with the reason otherwise), a Host header other than this server's is refused (403, against DNS
rebinding), one computation runs at a time (429 while busy) under a wall-clock limit (503), and the JSON never
holds NaN.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from ravine.race.explore import knob_of, page_noise
from ravine.race.expression import ExpressionError, typed_surface
from ravine.race.pack import pack_surface
from ravine.race.run import CONTESTANTS, RaceSettings, descend
from ravine.race.surfaces import SURFACES, Surface

MAX_STEPS = 1000
TIME_LIMIT_S = 10.0
LR_SCALE_RANGE = (1e-3, 1e3)
NOISE_LIMIT = 1e6
FIELDS = {"surface", "start", "steps", "runs", "expr", "window"}
RUN_FIELDS = {"name", "lr_scale", "beta1", "beta2", "noise"}


class BadRequest(ValueError):
    pass


def _in_range(name: str, value: Any, low: float, high: float, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise BadRequest(f"{name} must be a finite number in [{low:g}, {high:g}{bracket}, got {value!r}")
    return float(value)


def _number(query: dict[str, list[str]], key: str, default: float, low: float, high: float) -> float:
    text = query.get(key, [str(default)])[0]
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{key} must be a number, got {text!r}") from None
    return _in_range(key, value, low, high)


def _runs(text: str) -> list[dict[str, Any]]:
    """The ``runs`` field: which contestants race, each with its lr multiple, momentum / β₁, β₂ and noise σ."""
    try:
        runs = json.loads(text)
    except json.JSONDecodeError:
        raise BadRequest(f"runs must be a JSON list, got {text[:80]!r}") from None
    if not isinstance(runs, list) or not runs or len(runs) > len(CONTESTANTS):
        raise BadRequest(f"runs must be a list of 1 to {len(CONTESTANTS)} objects")
    out, seen = [], set()
    for run in runs:
        if not isinstance(run, dict) or run.get("name") not in CONTESTANTS or run["name"] in seen:
            raise BadRequest(f"each run needs a distinct name from {', '.join(CONTESTANTS)}, got {run!r}"[:300])
        unknown = set(run) - RUN_FIELDS
        if unknown:
            raise BadRequest(f"unknown run field(s): {', '.join(sorted(unknown))}")
        name = run["name"]
        seen.add(name)
        knob = knob_of(name)
        checked: dict[str, Any] = {"name": name,
                                   "lr_scale": _in_range("lr_scale", run.get("lr_scale", 1.0), *LR_SCALE_RANGE)}
        if run.get("beta1") is not None:
            if knob is None:
                raise BadRequest(f"{name} has no momentum or β₁ to set")
            checked["beta1"] = _in_range(f"{name}'s {knob.label}", run["beta1"], knob.values[0], 1.0, True)
        if run.get("beta2") is not None:
            if knob is None or knob.beta2 is None:
                raise BadRequest(f"{name} has no β₂ to set")
            checked["beta2"] = _in_range(f"{name}'s β₂", run["beta2"], 0.0, 1.0, True)
        if run.get("noise") is not None:
            checked["noise"] = _in_range("noise", run["noise"], 0.0, NOISE_LIMIT)
        out.append(checked)
    return out


def parse_request(query: dict[str, list[str]]) -> dict[str, Any]:
    """Validate the query of /api/race; raises BadRequest naming the field."""
    unknown = set(query) - FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    name = query.get("surface", [""])[0]
    if name == "typed":
        window_text = query.get("window", [""])[0]
        try:
            window = tuple(float(v) for v in window_text.split(","))
        except ValueError:
            raise BadRequest(f"window must be x0,x1,y0,y1, got {window_text!r}") from None
        if len(window) != 4:
            raise BadRequest(f"window must be x0,x1,y0,y1, got {window_text!r}")
        try:
            box: Surface = typed_surface(query.get("expr", [""])[0], window)  # type: ignore[arg-type]
        except ExpressionError as error:
            raise BadRequest(f"expr: {error}") from None
    elif name in SURFACES:
        box = SURFACES[name]
    else:
        raise BadRequest(f"surface must be one of {', '.join(SURFACES)} or typed, got {name!r}")
    start_text = query.get("start", [f"{box.start[0]},{box.start[1]}"])[0]
    try:
        x, y = (float(v) for v in start_text.split(","))
    except ValueError:
        raise BadRequest(f"start must be x,y, got {start_text!r}") from None
    (x0, x1), (y0, y1) = box.x_range, box.y_range
    if not (math.isfinite(x) and math.isfinite(y) and x0 <= x <= x1 and y0 <= y <= y1):
        raise BadRequest(f"start must lie in the surface's window [{x0:g}, {x1:g}] × [{y0:g}, {y1:g}], "
                         f"got {start_text!r}")
    steps = _number(query, "steps", 300, 1, MAX_STEPS)
    if steps != int(steps):
        raise BadRequest(f"steps must be an integer, got {steps!r}")
    runs = _runs(query["runs"][0]) if "runs" in query else [{"name": n, "lr_scale": 1.0} for n in CONTESTANTS]
    return {"surface": box, "start": (x, y), "steps": int(steps), "runs": runs}


def compute(request: dict[str, Any], settings: RaceSettings | None = None,
            time_limit: float = TIME_LIMIT_S) -> dict[str, Any]:
    """The race a request asks for, packed for the page: each run's lr is the command line's (``settings``: lr
    mode, lr, noise and seed) times its ``lr_scale``; momentum / β₁, β₂ and noise default to the optimizer's and
    the command's."""
    settings = settings or RaceSettings()
    surface: Surface = request["surface"]
    deadline = time.monotonic() + time_limit
    names = [run["name"] for run in request["runs"]]
    base = settings.lrs(surface.name, names)
    grids, live = {}, {}
    for run in request["runs"]:
        name = run["name"]
        knob = knob_of(name)
        cell: dict[str, Any] = {"lr": base[name] * run["lr_scale"]}
        beta1 = run.get("beta1", knob.default if knob else None)
        beta2 = run.get("beta2", knob.beta2 if knob else None)
        if knob is not None:
            cell.update(knob.cell(beta1, beta2))
        noise = run.get("noise", settings.noise)
        grids[name] = (base[name], descend(surface, name, [cell], [request["start"]], request["steps"], noise,
                                           settings.seed, deadline, record=True))
        live[name] = {"lr": cell["lr"], "lr_scale": run["lr_scale"], "beta1": beta1, "beta2": beta2,
                      "noise": noise}
    return pack_surface(surface, grids, page_noise(surface, settings.noise), request["steps"], request["start"],
                        live=live)


def make_handler(holder: dict[str, Any], time_limit: float) -> type[BaseHTTPRequestHandler]:
    busy = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ravine-race"

        def log_message(self, *args: Any) -> None:  # keep test and terminal output quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def do_GET(self) -> None:
            port = holder["port"]
            if self.headers.get("Host", "") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                self._error(HTTPStatus.FORBIDDEN, "foreign Host header")
                return
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, holder["page"], "text/html; charset=utf-8")
                return
            if url.path == "/favicon.ico":  # browsers ask; the page has none
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
                return
            if url.path != "/api/race":
                self._error(HTTPStatus.NOT_FOUND, f"no such resource: {url.path}")
                return
            try:
                request = parse_request(parse_qs(url.query, keep_blank_values=True))
            except BadRequest as error:
                self._error(HTTPStatus.BAD_REQUEST, str(error))
                return
            if not busy.acquire(blocking=False):
                self._error(HTTPStatus.TOO_MANY_REQUESTS, "another race is being computed; try again")
                return
            try:
                result = compute(request, holder["settings"], time_limit)
            except TimeoutError as error:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(error))
                return
            finally:
                busy.release()
            self._send(HTTPStatus.OK, json.dumps(result, allow_nan=False).encode(), "application/json")

    return Handler


def make_server(page: bytes, port: int = 0, time_limit: float = TIME_LIMIT_S,
                settings: RaceSettings | None = None) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (port 0 picks a free one; read it from ``server.server_address``).

    ``ravine race --serve`` binds the port before it computes the race, so a busy port fails at once, and hands
    the page and its settings over afterwards with :func:`configure`."""
    holder: dict[str, Any] = {"port": port, "page": page, "settings": settings or RaceSettings()}
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(holder, time_limit))
    server.page_holder = holder  # type: ignore[attr-defined]
    holder["port"] = server.server_address[1]
    return server


def configure(server: ThreadingHTTPServer, page: bytes, settings: RaceSettings) -> None:
    """Serve ``page`` at ``/`` and race under ``settings`` from now on."""
    server.page_holder.update(page=page, settings=settings)  # type: ignore[attr-defined]

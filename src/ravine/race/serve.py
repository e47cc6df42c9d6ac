"""``ravine race --serve``: the race page, live. Click the surface to start there; the real optimizers recompute.

A standard-library ``ThreadingHTTPServer`` bound to 127.0.0.1 serves the page and one JSON endpoint,
``GET /api/race?surface=…&start=x,y&lr_scale=…&steps=…[&optimizers=A,B]``. Every field is checked against an
allow-list or a range (400 with the reason otherwise), a Host header other than this server's is refused (403,
against DNS rebinding), one computation runs at a time (429 while busy) under a wall-clock limit (503), and the
JSON never holds NaN.
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

from ravine.race.page import path_data
from ravine.race.run import CONTESTANTS, RaceSettings, race
from ravine.race.surfaces import SURFACES

MAX_STEPS = 1000
TIME_LIMIT_S = 10.0
LR_SCALE_RANGE = (1e-3, 1e3)


class BadRequest(ValueError):
    pass


def _number(query: dict[str, list[str]], key: str, default: float, low: float, high: float) -> float:
    text = query.get(key, [str(default)])[0]
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{key} must be a number, got {text!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{key} must be a finite number in [{low:g}, {high:g}], got {text!r}")
    return value


def parse_request(query: dict[str, list[str]]) -> dict[str, Any]:
    """Validate the query of /api/race; raises BadRequest naming the field."""
    unknown = set(query) - {"surface", "start", "lr_scale", "steps", "optimizers"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    surface = query.get("surface", [""])[0]
    if surface not in SURFACES:
        raise BadRequest(f"surface must be one of {', '.join(SURFACES)}, got {surface!r}")
    box = SURFACES[surface]
    start_text = query.get("start", [f"{box.start[0]},{box.start[1]}"])[0]
    parts = start_text.split(",")
    try:
        x, y = (float(v) for v in parts)
    except ValueError:
        raise BadRequest(f"start must be x,y, got {start_text!r}") from None
    (x0, x1), (y0, y1) = box.x_range, box.y_range
    if not (math.isfinite(x) and math.isfinite(y) and x0 <= x <= x1 and y0 <= y <= y1):
        raise BadRequest(f"start must lie in the surface's window [{x0}, {x1}] × [{y0}, {y1}], "
                         f"got {start_text!r}")
    names = query.get("optimizers", [",".join(CONTESTANTS)])[0].split(",")
    if not names or any(n not in CONTESTANTS for n in names) or len(set(names)) != len(names):
        raise BadRequest(f"optimizers must be distinct names from {', '.join(CONTESTANTS)}")
    steps = _number(query, "steps", 300, 1, MAX_STEPS)
    if steps != int(steps):
        raise BadRequest(f"steps must be an integer, got {steps!r}")
    return {"surface": surface, "start": (x, y), "lr_scale": _number(query, "lr_scale", 1.0, *LR_SCALE_RANGE),
            "steps": int(steps), "optimizers": names}


def compute(request: dict[str, Any], settings: RaceSettings | None = None,
            time_limit: float = TIME_LIMIT_S) -> dict[str, Any]:
    """The race a request asks for, under the command line's lr mode, lr, noise and seed (``settings``)."""
    settings = settings or RaceSettings()
    surface = SURFACES[request["surface"]]
    lrs = settings.lrs(surface.name, request["optimizers"], request["lr_scale"])
    trajectories = race(surface, request["optimizers"], lrs, request["steps"], request["start"], settings.noise,
                        settings.seed, deadline=time.monotonic() + time_limit)
    paths = [path_data(surface, t) for t in trajectories]
    return {"surface": surface.name, "steps": request["steps"], "paths": paths}


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

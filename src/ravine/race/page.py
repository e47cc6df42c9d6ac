"""The race as one self-contained HTML page: no library, no network request, works from ``file://``.

Canvas drawing in a few hundred lines of JavaScript (``page.js``, ``page.css`` beside this file) over the packed
runs of :mod:`ravine.race.pack`: a contour view and a 3-D view of each surface with the paths, f − f* by step,
and one row per optimizer with its lr and momentum sliders. Sliders pick among runs the real optimizer classes
computed at ``ravine race`` time; the noise toggle switches to the seeded noisy race; arrows show one optimizer's
gradient, momentum and step at the current step. The page's state lives in the URL's hash, so a link reproduces
a view. Live mode (``ravine race --serve``) adds ``live.js``: click to start anywhere, continuous sliders and a
typed surface, recomputed by the server.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ravine.files import atomic_output
from ravine.race.explore import LR_MULTIPLIERS
from ravine.race.families import FAMILIES


def _asset(name: str) -> str:
    return resources.files("ravine.race").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    """JSON that cannot end the ``<script>`` element it sits in."""
    return json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def write_page(surfaces: dict[str, dict[str, Any]], steps: int, path: str | os.PathLike[str],
               subtitle: str = "", noise: float = 0.0) -> Path:
    """Write the page for ``{surface name: packed index}`` (:func:`ravine.race.pack.race_and_pack`) atomically."""
    page = render_page(surfaces, steps, subtitle, noise=noise)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)


def render_page(surfaces: dict[str, dict[str, Any]], steps: int, subtitle: str = "", live: bool = False,
                noise: float = 0.0) -> str:
    """The page's HTML; ``live`` adds click-to-start, continuous sliders and a typed surface, asking the server
    that serves the page to recompute."""
    data = {"steps": steps, "surfaces": surfaces, "families": FAMILIES, "multipliers": list(LR_MULTIPLIERS),
            "live": live, "noise": noise}
    options = "".join(f'<option value="{html.escape(name)}">{html.escape(index["title"])}</option>'
                      for name, index in surfaces.items())
    raced = {c["name"] for index in surfaces.values() for c in index["contestants"]}
    show = '<option value="curated">a curated few</option>' + "".join(
        f'<option value="{html.escape(family)}">{html.escape(family)}</option>'
        for family, names in FAMILIES.items() if raced & set(names))
    show += '<option value="all">all</option><option value="custom" hidden>your choice</option>'
    noise_control = "" if live else ('<label title="the seeded noisy-gradient race, at each optimizer\'s own lr">'
                                     '<input type="checkbox" id="noise"> <span id="noise-label">gradient noise'
                                     '</span></label>')
    live_controls = ""
    if live:
        live_controls = ('<form id="typed" class="controls" autocomplete="off"><label>f(x, y) = <input id="expr" '
                         'size="28" maxlength="200" placeholder="x^2 + 10*sin(y)"></label><label>x from <input '
                         'id="wx0" size="4" value="-3"> to <input id="wx1" size="4" value="3"></label><label>y '
                         'from <input id="wy0" size="4" value="-3"> to <input id="wy1" size="4" value="3"></label>'
                         '<button id="race-typed">race it</button></form>'
                         '<p id="status" class="note">click the surface to start there; the sliders in each row '
                         "recompute on release</p>")
    script = _asset("page.js") + (_asset("live.js") if live else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ravine — the optimizer race</title><style>{_asset("page.css")}</style></head>
<body><header><h1>The optimizer race</h1>
<p class="lead">ravine's own optimizer classes, stepping on torch tensors: what you watch is what you train
with. {html.escape(subtitle)}</p></header>
<div class="controls" id="controls"><label>surface <select id="surface">{options}</select></label>
<label>show <select id="show">{show}</select></label>
<button id="play" type="button">▶ play</button>
<input id="slider" type="range" min="0" max="{steps}" value="0" aria-label="step">
<span id="counter">step 0 / {steps}</span>
<label>speed <select id="speed"><option value="1">1×</option><option value="2" selected>2×</option>
<option value="5">5×</option><option value="10">10×</option></select></label>
{noise_control}
<label>view <select id="view"><option value="2d">contours</option><option value="3d">3-D</option></select></label>
<label>arrows <select id="arrows"><option value="">none</option></select></label></div>
{live_controls}
<main id="layout"><div id="plot-wrap"><canvas id="plot" aria-label="the surface and the paths"></canvas>
<div id="tip" hidden></div><p id="note" class="note"></p>
<p class="key">□ start · ☆ global minimum · × diverged · arrows: −∇f (black), −m (grey, dashed), the step taken
(the optimizer's colour)</p></div>
<aside id="side"><canvas id="curves" aria-label="f minus f-star by step"></canvas><p id="readout" class="note"></p>
<div id="rows"></div></aside></main>
<script type="application/json" id="race-data">{_json_for_script(data)}</script>
<script>{script}</script></body></html>
"""

"""The race as one self-contained HTML page: plotly with its JavaScript inlined, no network resource.

One plotly figure per surface (contour with every path; loss and distance-to-minimum panels), chosen with a
selector. Trajectories are embedded once; a small script replays them (play/pause, step slider, speed, step
counter) by restyling the path traces, instead of plotly animation frames, whose size grows with the square
of the trail length. Legend clicks (plotly's own) hide an optimizer's path and curves together.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from ravine.files import atomic_output
from ravine.race.colours import MINIMUM, START, colour_of
from ravine.race.families import FAMILIES, curated
from ravine.race.run import Trajectory
from ravine.race.surfaces import Surface

_SCRIPT = """
const RACE = __DATA__;
let step = 0, timer = null;
const $ = (id) => document.getElementById(id);
function current() { return RACE.surfaces[$("surface").value]; }
function show(s) {
  const surface = current();
  step = Math.max(0, Math.min(s, RACE.steps));
  const xs = [], ys = [], cd = [], lx = [], ly = [], dx = [], dy = [];
  for (const p of surface.paths) {
    xs.push(p.x.slice(0, step + 1)); ys.push(p.y.slice(0, step + 1));
    cd.push(p.loss.slice(0, step + 1).map((v) => [v]));  // what hover shows: this race's losses
    lx.push(p.t.slice(0, step + 1)); ly.push(p.gap.slice(0, step + 1));
    dx.push(p.t.slice(0, step + 1)); dy.push(p.dist.slice(0, step + 1));
  }
  const div = $("fig-" + $("surface").value);
  Plotly.restyle(div, {x: xs, y: ys, customdata: cd}, surface.path_traces);
  Plotly.restyle(div, {x: lx, y: ly}, surface.loss_traces);
  Plotly.restyle(div, {x: dx, y: dy}, surface.dist_traces);
  $("slider").value = step; $("counter").textContent = "step " + step + " / " + RACE.steps;
}
function pause() { if (timer) { clearInterval(timer); timer = null; } $("play").textContent = "▶ play"; }
function play() {
  if (timer) { pause(); return; }
  if (step >= RACE.steps) show(0);
  $("play").textContent = "‖ pause";  // U+2016: in Debian's default fonts (U+23F8 is not)
  timer = setInterval(() => {
    if (step >= RACE.steps) { pause(); return; }
    show(step + Number($("speed").value));
  }, 40);
}
function applyShow() {  // the curated few, a family or all; hidden ones stay in the legend, one click away
  const name = $("surface").value, surface = current(), choice = $("show").value;
  const pick = choice === "all" ? null : choice === "curated" ? surface.curated : RACE.families[choice];
  const visible = surface.paths.map((p) => (pick === null || pick.includes(p.name)) ? true : "legendonly");
  const div = $("fig-" + name);
  for (const traces of [surface.path_traces, surface.loss_traces, surface.dist_traces]) {
    Plotly.restyle(div, {visible: visible}, traces);
  }
}
function choose() {
  pause();
  for (const name of Object.keys(RACE.surfaces)) $("box-" + name).style.display = "none";
  $("box-" + $("surface").value).style.display = "block";
  Plotly.Plots.resize($("fig-" + $("surface").value));  // laid out while hidden: take the page's width
  applyShow();
  show(step);
}
$("play").addEventListener("click", play);
$("slider").addEventListener("input", (e) => { pause(); show(Number(e.target.value)); });
$("surface").addEventListener("change", choose);
$("show").addEventListener("change", applyShow);
window.addEventListener("load", () => { choose(); show(0); });
"""

_LIVE_SCRIPT = """
async function rerun(surfaceName, x, y) {
  const surface = RACE.surfaces[surfaceName];
  const query = new URLSearchParams({surface: surfaceName, start: x + "," + y, steps: String(RACE.steps),
                                     lr_scale: String(10 ** Number($("lr-scale").value)),
                                     optimizers: surface.paths.map((p) => p.name).join(",")});
  $("status").textContent = "computing…";
  const response = await fetch("/api/race?" + query);
  const body = await response.json();
  if (!response.ok) { $("status").textContent = "error: " + body.error; return; }
  surface.paths = body.paths;
  surface.start = [x, y];
  const div = $("fig-" + surfaceName);
  Plotly.restyle(div, {x: [[x]], y: [[y]]}, [surface.start_trace]);
  Plotly.restyle(div, {name: body.paths.map((p) => p.label)}, surface.path_traces);  // the new lrs
  $("status").textContent = "started at (" + x.toFixed(3) + ", " + y.toFixed(3) + ")";
  pause(); show(0); play();
}
for (const name of Object.keys(RACE.surfaces)) {
  $("fig-" + name).on("plotly_click", (event) => {
    const point = event.points.find((p) => p.curveNumber === 0);  // the contour
    if (point) rerun(name, point.x, point.y);
  });
}
function lrLabel() {
  $("lr-label").textContent = "lr × " + (10 ** Number($("lr-scale").value)).toPrecision(2);
}
$("lr-scale").addEventListener("input", lrLabel);
$("lr-scale").addEventListener("change", () => {  // released: race again from the same start
  lrLabel();
  const name = $("surface").value;
  rerun(name, ...RACE.surfaces[name].start);
});
"""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def path_data(surface: Surface, t: Trajectory) -> dict[str, Any]:
    """What the page needs of one trajectory, JSON-safe (non-finite numbers become null, never NaN).

    From the step a run diverged at, every series is null: its lines end there instead of running on flat at
    the position the run was held at.
    """
    end = len(t.xs) if t.diverged_at is None else t.diverged_at

    def drawn(values: list[float]) -> list[float | None]:
        return [_finite(v) if i < end else None for i, v in enumerate(values)]

    return {
        "name": t.name,
        "lr": t.lr,
        "label": t.label,
        "diverged_at": t.diverged_at,
        "x": drawn(t.xs),
        "y": drawn(t.ys),
        "t": list(range(len(t.xs))),
        "loss": drawn(t.losses),
        "gap": drawn([math.log10(max(f - surface.f_min, 0.0) + 1e-12) if math.isfinite(f) else math.nan
                      for f in t.losses]),
        "dist": drawn([surface.distance_to_nearest_minimum(x, y) for x, y in zip(t.xs, t.ys, strict=True)]),
    }


def _figure(surface: Surface, trajectories: list[Trajectory], div_id: str,
            shown: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        specs=[[{"rowspan": 2}, {}], [None, {}]],
                        subplot_titles=(f"{surface.title}: {surface.formula}", "log10(f − f*)",
                                        "distance to the nearest minimum"))
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    gx, gy, z = surface.log_gap_grid(160)
    fig.add_trace(go.Contour(x=gx.tolist(), y=gy.tolist(), z=z.tolist(), colorscale="Greys", reversescale=True,
                             showscale=False, ncontours=30, hoverinfo="none", line={"width": 0.3}), row=1, col=1)
    fig.add_trace(go.Scatter(x=[m[0] for m in surface.minima], y=[m[1] for m in surface.minima], mode="markers",
                             marker={"symbol": "star", "size": 16, "color": MINIMUM["colour"],
                                     "line": {"width": 1.5, "color": MINIMUM["edge"]}},
                             name="global minima", hovertemplate="minimum (%{x:.4g}, %{y:.4g})<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=[surface.start[0]], y=[surface.start[1]], mode="markers", name="start",
                             marker={"symbol": "square", "size": 10, "color": START["colour"],
                                     "line": {"width": 1, "color": START["edge"]}}),
                  row=1, col=1)
    paths, path_traces, loss_traces, dist_traces = [], [], [], []
    for t in trajectories:
        color = colour_of(t.name)
        visible: bool | str = True if shown is None or t.name in shown else "legendonly"
        path = path_data(surface, t)
        paths.append(path)
        steps, gap, dist = path["t"], path["gap"], path["dist"]
        path_traces.append(len(fig.data))
        fig.add_trace(go.Scatter(x=t.xs[:1], y=t.ys[:1], mode="lines+markers", name=t.label,
                                 legendgroup=t.name, line={"color": color, "width": 2}, marker={"size": 3},
                                 visible=visible,
                                 customdata=[path["loss"][:1]],
                                 hovertemplate=f"{t.name}<br>(%{{x:.4g}}, %{{y:.4g}})"
                                               "<br>loss %{customdata[0]:.4g}<extra></extra>"), row=1, col=1)
        loss_traces.append(len(fig.data))
        fig.add_trace(go.Scatter(x=steps[:1], y=gap[:1], mode="lines", legendgroup=t.name, showlegend=False,
                                 line={"color": color}, name=t.name, visible=visible), row=1, col=2)
        dist_traces.append(len(fig.data))
        fig.add_trace(go.Scatter(x=steps[:1], y=dist[:1], mode="lines", legendgroup=t.name, showlegend=False,
                                 line={"color": color}, name=t.name, visible=visible), row=2, col=2)
    fig.update_xaxes(range=[x0, x1], row=1, col=1)
    fig.update_yaxes(range=[y0, y1], row=1, col=1)
    steps_total = len(trajectories[0].xs) - 1 if trajectories else 0
    fig.update_xaxes(range=[0, steps_total], row=1, col=2)
    fig.update_xaxes(range=[0, steps_total], title_text="step", row=2, col=2)
    fig.update_yaxes(type="log", exponentformat="power", row=2, col=2)  # 10⁻⁹, not "1n"
    fig.update_layout(height=640, margin={"l": 40, "r": 20, "t": 60, "b": 40}, legend={"x": 1.02, "y": 1},
                      template="plotly_white")
    markup = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                         config={"displaylogo": False, "responsive": True})
    start = [trajectories[0].xs[0], trajectories[0].ys[0]] if trajectories else list(surface.start)
    data = {"paths": paths, "path_traces": path_traces, "loss_traces": loss_traces, "dist_traces": dist_traces,
            "start_trace": 2, "start": start,
            "curated": curated(surface.name, [t.name for t in trajectories])}
    return markup, data


def write_page(results: dict[str, tuple[Surface, list[Trajectory]]], steps: int, path: str | os.PathLike[str],
               subtitle: str = "") -> Path:
    """Write the page for ``{surface name: (surface, trajectories)}`` atomically to ``path``."""
    page = render_page(results, steps, subtitle)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)


def render_page(results: dict[str, tuple[Surface, list[Trajectory]]], steps: int, subtitle: str = "",
                live: bool = False) -> str:
    """The page's HTML; ``live`` adds click-to-start and an lr slider that ask the server to recompute."""
    from plotly.offline import get_plotlyjs

    figures, data = [], {}
    for name, (surface, trajectories) in results.items():
        markup, data[name] = _figure(surface, trajectories, f"fig-{name}",
                                     curated(name, [t.name for t in trajectories]))
        figures.append(f'<div id="box-{name}" style="display:none">{markup}'
                       f"<p class='note'>{html.escape(surface.note)}</p></div>")
    options = "".join(f'<option value="{name}">{html.escape(surface.title)}</option>'
                      for name, (surface, _) in results.items())
    raced = {t.name for _, trajectories in results.values() for t in trajectories}
    show_options = '<option value="curated">a curated few</option>' + "".join(
        f'<option value="{html.escape(family)}">{html.escape(family)}</option>'
        for family, names in FAMILIES.items() if raced & set(names)) + '<option value="all">all</option>'

    script = _SCRIPT.replace("__DATA__", json.dumps({"steps": steps, "surfaces": data, "families": FAMILIES},
                                                    allow_nan=False))
    if live:
        script += _LIVE_SCRIPT
    live_controls = ('<label><span id="lr-label">lr × 1.0</span> <input id="lr-scale" type="range" min="-2" '
                     'max="2" step="0.1" value="0"></label> <span id="status">click the surface to start '
                     "there</span>") if live else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ravine — the optimizer race</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} .controls{{display:flex;gap:1em;
align-items:center;flex-wrap:wrap;margin:.5em 0}} .note{{color:#666;font-size:.9em}} #slider{{width:24em}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head>
<body><h1>The optimizer race</h1>
<p>ravine's own optimizer classes, stepping on torch tensors: what you watch is what you train with.
{html.escape(subtitle)}</p>
<div class="controls"><label>surface <select id="surface">{options}</select></label>
<button id="play">▶ play</button>
<input id="slider" type="range" min="0" max="{steps}" value="0" aria-label="step">
<span id="counter">step 0 / {steps}</span>
<label>show <select id="show">{show_options}</select></label>
<label>speed <select id="speed"><option value="1">1×</option><option value="2" selected>2×</option>
<option value="5">5×</option><option value="10">10×</option></select></label>{live_controls}</div>
{"".join(figures)}
<script type="text/javascript">{script}</script></body></html>
"""
    return page

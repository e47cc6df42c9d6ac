"""``ravine race``: run the race and write its tables and pictures."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ravine.progress import Progress
from ravine.race.run import CONTESTANTS, package_tuned_path, race, tune_all, tuned_lrs
from ravine.race.surfaces import SURFACES
from ravine.registry import match_names


def _choose(text: str | None, known: dict, what: str) -> list[str]:
    if text is None:
        return list(known)
    names, unknown = match_names([n.strip() for n in text.split(",") if n.strip()], list(known))
    if unknown or not names:
        raise ValueError(f"Invalid {what}: {unknown or text!r} (choose from {', '.join(known)})")
    return names


def _start(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        x, y = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"Invalid start: {text!r} (expected x,y such as -1.2,1)") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"Invalid start: {text!r} (coordinates must be finite)")
    return x, y


def format_table(surface_name: str, rows: list[dict]) -> str:
    surface = SURFACES[surface_name]
    lines = [f"## {surface.title} — {surface.formula}", "",
             "| optimizer | lr | final loss − f* | distance to nearest minimum | first step with f − f* < 1e-3 "
             "| diverged |",
             "|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["diverged"], r["final_loss"])):
        reached = "—" if r["steps_to_tolerance"] is None else str(r["steps_to_tolerance"])
        lines.append(f"| {r['optimizer']} | {r['lr']:.3g} | {r['final_loss'] - surface.f_min:.3g} | "
                     f"{r['distance']:.3g} | {reached} | {'yes' if r['diverged'] else 'no'} |")
    return "\n".join(lines)


def run_race(args: argparse.Namespace) -> int:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.action == "tune":
        result = tune_all(args.steps)
        path = package_tuned_path()
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        return 0
    try:
        surfaces = _choose(args.surfaces, SURFACES, "surfaces")
        names = _choose(args.optimizers, CONTESTANTS, "optimizers")
        start = _start(args.start)
        if not (math.isfinite(args.lr) and args.lr > 0):
            raise ValueError(f"Invalid lr: {args.lr} (lr must be a finite number > 0)")
        if not (math.isfinite(args.noise) and args.noise >= 0):
            raise ValueError(f"Invalid noise: {args.noise} (noise must be a finite number >= 0)")
    except ValueError as error:
        print(f"ravine race: {error}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        print("ravine race: the page and pictures need plotly and matplotlib: pip install 'ravine[plot]'",
              file=sys.stderr)
        return 2
    from ravine.plotting import animate_race, plot_race
    from ravine.race.page import write_page

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    tuned = tuned_lrs() if args.lr_mode == "tuned" else {}
    summary, tables, results = {}, [], {}
    with Progress(len(surfaces), "racing") as bar:
        for name in surfaces:
            surface = SURFACES[name]
            bar.update(f"{surface.title}: {len(names)} optimizers × {args.steps} steps")
            lrs = {n: (tuned.get(name, {}).get(n, CONTESTANTS[n][1]) if args.lr_mode == "tuned"
                       else args.lr if args.lr_mode == "shared" else CONTESTANTS[n][1]) for n in names}
            trajectories = race(surface, names, lrs, args.steps, start or surface.start, args.noise, args.seed)
            rows = [t.summary(surface) for t in trajectories]
            summary[name] = {"rows": rows, "paths": {t.name: {"x": t.xs, "y": t.ys, "loss": t.losses}
                                                     for t in trajectories}}
            tables.append(format_table(name, rows))
            results[name] = (surface, trajectories)
            plot_race(surface, trajectories, out / f"{name}.png")
    first_surface, first_trajectories = next(iter(results.values()))
    log(f"animating {first_surface.title} to race.gif")
    animate_race(first_surface, first_trajectories, out / "race.gif")
    write_page(results, args.steps, out / "race.html",
               subtitle=f"Learning rates: {args.lr_mode} (shown in the legend); {args.steps} steps; "
                        f"gradient noise σ = {args.noise}.")
    report = "\n\n".join(tables)
    (out / "summary.md").write_text(f"lr mode: {args.lr_mode} · steps: {args.steps} · noise σ: {args.noise}\n\n"
                                    + report + "\n")
    (out / "race.json").write_text(json.dumps({"lr_mode": args.lr_mode, "steps": args.steps,
                                               "noise": args.noise, "seed": args.seed, "surfaces": summary}))
    print(report)
    if args.serve:
        return _serve(results, args)
    print(f"\nwrote {out}/race.html (open it in a browser; works offline), race.gif, summary.md, race.json and "
          "one PNG per surface", file=sys.stderr)
    return 0


def _serve(results: dict, args: argparse.Namespace) -> int:
    from ravine.race.page import render_page
    from ravine.race.serve import make_server

    if not 0 <= args.port <= 65535:
        print(f"ravine race: Invalid port: {args.port} (port must be in [0, 65535])", file=sys.stderr)
        return 2
    page = render_page(results, args.steps, "Live: click a surface to start there; the slider scales every lr.",
                       live=True).encode()
    server = make_server(page, args.port)
    print(f"serving the live race on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

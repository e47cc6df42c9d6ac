"""``ravine race``: run the race and write its tables and pictures."""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

from ravine.extras import require
from ravine.files import atomic_folder, check_output_folder
from ravine.progress import Progress
from ravine.race.families import curated
from ravine.race.pack import race_and_pack
from ravine.race.run import CONTESTANTS, TUNED_FILE, RaceSettings, tune_all, tuned_lrs
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


RACE_OUTPUTS = ("*.png", "race.gif", "race.html", "summary.md", "race.json")
TUNE_OUTPUTS = ("tuned_lrs.json",)


def _settings(args: argparse.Namespace) -> RaceSettings:
    """The lr mode, lr, noise and seed the command asks for. ``--lr`` alone means ``--lr-mode shared``;
    ``--tuned FILE`` alone means ``--lr-mode tuned`` with that file's table."""
    mode = args.lr_mode
    if args.lr is not None:
        if mode not in (None, "shared"):
            raise ValueError(f"Invalid lr: --lr {args.lr:g} is the lr every optimizer shares, so it cannot go "
                             f"with --lr-mode {mode} (drop one of them)")
        mode = "shared"
        if not (math.isfinite(args.lr) and args.lr > 0):
            raise ValueError(f"Invalid lr: {args.lr} (lr must be a finite number > 0)")
    if args.tuned is not None and mode not in (None, "tuned"):
        raise ValueError(f"Invalid tuned: --tuned gives tuned learning rates, so it cannot go with "
                         f"--lr-mode {mode}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise ValueError(f"Invalid noise: {args.noise} (noise must be a finite number >= 0)")
    mode = mode or "tuned"
    tuned = tuned_lrs(args.tuned) if mode == "tuned" else None  # read once, not once per surface
    return RaceSettings(mode, 1e-2 if args.lr is None else args.lr, args.noise, args.seed, tuned)


def _tune(args: argparse.Namespace) -> int:
    output = args.output or "race-tune"
    check_output_folder(output, TUNE_OUTPUTS)
    result = tune_all(args.steps)
    with atomic_folder(output, TUNE_OUTPUTS) as folder:
        (folder / TUNED_FILE).write_text(json.dumps(result, indent=1) + "\n")
    path = Path(output) / TUNED_FILE
    print(f"wrote {path}; race with it: ravine race --tuned {path}")
    return 0


def run_race(args: argparse.Namespace) -> int:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.action == "tune":
            return _tune(args)
        surfaces = _choose(args.surfaces, SURFACES, "surfaces")
        names = _choose(args.optimizers, CONTESTANTS, "optimizers")
        start = _start(args.start)
        settings = _settings(args)
        output = args.output or "race"
        check_output_folder(output, RACE_OUTPUTS)
        if args.serve and not 0 <= args.port <= 65535:
            raise ValueError(f"Invalid port: {args.port} (port must be in [0, 65535])")
    except ValueError as error:
        print(f"ravine race: {error}", file=sys.stderr)
        return 2
    require("ravine race", "plot", "matplotlib")
    server = _bind(args.port) if args.serve else None  # a busy port fails now, not after the race
    if args.serve and server is None:
        return 2
    from ravine.plotting import animate_race, plot_race
    from ravine.race.page import write_page

    def drawn(surface: str, trajectories: list) -> list:
        """The PNGs and the GIF draw the curated few, or every optimizer the command named."""
        keep = names if args.optimizers else curated(surface, names)
        return [t for t in trajectories if t.name in keep]

    summary, tables, results, packed = {}, [], {}, {}
    with atomic_folder(output, RACE_OUTPUTS) as out:
        with Progress(len(surfaces) * len(names), "racing") as bar:
            for name in surfaces:
                surface = SURFACES[name]
                lrs = settings.lrs(name, names)
                trajectories, packed[name] = race_and_pack(
                    surface, names, lrs, args.steps, start or surface.start, settings.noise, settings.seed,
                    progress=lambda who, s=surface: bar.update(f"{s.title}: {who}, lr × momentum grid"))
                rows = [t.summary(surface) for t in trajectories]
                summary[name] = {"rows": rows, "paths": {t.name: {"x": t.xs, "y": t.ys, "loss": t.losses}
                                                         for t in trajectories}}
                tables.append(format_table(name, rows))
                results[name] = (surface, trajectories)
                plot_race(surface, drawn(name, trajectories), out / f"{name}.png")
        first, (first_surface, first_trajectories) = next(iter(results.items()))
        log(f"animating {first_surface.title} to race.gif")
        animate_race(first_surface, drawn(first, first_trajectories), out / "race.gif")
        write_page(packed, args.steps, out / "race.html", subtitle=f"{settings.describe()}; {args.steps} steps.",
                   noise=settings.noise)
        report = "\n\n".join(tables)
        (out / "summary.md").write_text(f"lr mode: {settings.lr_mode} · steps: {args.steps} · "
                                        f"noise σ: {settings.noise}\n\n" + report + "\n")
        (out / "race.json").write_text(json.dumps({"lr_mode": settings.lr_mode, "steps": args.steps,
                                                   "noise": settings.noise, "seed": settings.seed,
                                                   "surfaces": summary}))
    print(report)
    if server is not None:
        return _serve(server, packed, args, settings)
    print(f"\nwrote {output}/race.html (open it in a browser; works offline), race.gif, summary.md, race.json and "
          "one PNG per surface", file=sys.stderr)
    return 0


def _bind(port: int) -> ThreadingHTTPServer | None:
    from ravine.race.serve import make_server

    try:
        return make_server(b"", port)
    except OSError as error:
        reason = "it is in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        print(f"ravine race: cannot serve on port {port}: {reason} (choose another with --port, or 0 for any "
              "free port)", file=sys.stderr)
        return None


def _serve(server: ThreadingHTTPServer, packed: dict, args: argparse.Namespace, settings: RaceSettings) -> int:
    from ravine.race.page import render_page
    from ravine.race.serve import configure

    page = render_page(packed, args.steps, f"Live: click a surface to start there, move a row's sliders, or type "
                       f"a surface ({settings.describe()}).", live=True, noise=settings.noise).encode()
    configure(server, page, settings)
    print(f"serving the live race on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0

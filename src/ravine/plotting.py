"""Pictures: schedules drawn with matplotlib (an optional dependency: ``pip install ravine[plot]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ravine.files import atomic_output
from ravine.race.colours import MINIMUM, START, colour_of
from ravine.schedules import Schedule


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - exercised only without matplotlib
        raise RuntimeError("plotting needs matplotlib: pip install 'ravine[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (a crash never leaves a half-written image behind), then close it,
    whether or not the write succeeded, so pyplot does not keep it."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        _pyplot().close(fig)
    return Path(path)


def _surface_axes(plt: Any, surface: Any, figsize: tuple[float, float], resolution: int, levels: int) -> Any:
    """A figure with the surface's log-gap contour, its window and its minima marked."""
    xs, ys, z = surface.log_gap_grid(resolution)
    fig, ax = plt.subplots(figsize=figsize)
    ax.contourf(xs.numpy(), ys.numpy(), z.numpy(), levels=levels, cmap="Greys_r", alpha=0.85)
    for mx, my in surface.minima:  # above the paths
        ax.plot(mx, my, "*", color=MINIMUM["colour"], markeredgecolor=MINIMUM["edge"], markersize=14, zorder=5)
    ax.set_xlim(*surface.x_range)
    ax.set_ylim(*surface.y_range)
    return fig, ax, (xs, ys, z)


def plot_schedule(schedule: Schedule, steps: int, path: str | os.PathLike[str]) -> Path:
    """Draw ``schedule`` over steps ``0..steps`` into a PNG at ``path``."""
    plt = _pyplot()
    xs = list(range(steps + 1))
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot(xs, [schedule(step) for step in xs], color="#1f6feb", linewidth=2)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(repr(schedule), fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_xlim(0, steps)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_race(surface: Any, trajectories: list[Any], path: str | os.PathLike[str]) -> Path:
    """Contour of log10(f − f* + ε) with every contestant's path, the start and the minima marked."""
    plt = _pyplot()
    fig, ax, (xs, ys, z) = _surface_axes(plt, surface, (7.5, 6.2), 240, 40)
    ax.contour(xs.numpy(), ys.numpy(), z.numpy(), levels=20, colors="white", linewidths=0.3, alpha=0.5)
    for t in trajectories:
        ax.plot(t.xs, t.ys, "-", color=colour_of(t.name), linewidth=1.6, label=t.label)
        ax.plot(t.xs[-1], t.ys[-1], "o", color=colour_of(t.name), markersize=4)
    _start_marker(ax, trajectories, surface)
    ax.set_title(f"{surface.title}: {surface.formula}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def _start_marker(ax: Any, trajectories: list[Any], surface: Any) -> None:
    start = (trajectories[0].xs[0], trajectories[0].ys[0]) if trajectories else surface.start
    ax.plot(*start, "s", color=START["colour"], markeredgecolor=START["edge"], markersize=7, label="start",
            zorder=6)


def animate_race(surface: Any, trajectories: list[Any], path: str | os.PathLike[str], frames: int = 75,
                 fps: int = 15, hold_s: float = 2.0) -> Path:
    """An animated GIF of the paths growing on the contour (matplotlib + Pillow, no external binary).

    900 px wide, the legend naming each optimizer with its lr, the start marked; ``frames`` frames of growth at
    ``fps``, then the finished race held for ``hold_s`` seconds before the loop starts again.
    """
    from matplotlib.animation import PillowWriter

    plt = _pyplot()
    fig, ax, _ = _surface_axes(plt, surface, (10.0, 6.0), 200, 30)
    lines = [ax.plot([], [], "-", color=colour_of(t.name), linewidth=2.0, label=t.label)[0] for t in trajectories]
    heads = [ax.plot([], [], "o", color=colour_of(t.name), markersize=5)[0] for t in trajectories]
    _start_marker(ax, trajectories, surface)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title = ax.set_title("", fontsize=11)
    fig.tight_layout()
    steps = len(trajectories[0].xs) - 1 if trajectories else 0
    try:
        with atomic_output(path) as tmp:
            writer = PillowWriter(fps=fps)
            with writer.saving(fig, tmp, dpi=90):
                for k in range(frames + 1):
                    step = round(steps * k / frames)
                    for line, head, t in zip(lines, heads, trajectories, strict=True):
                        line.set_data(t.xs[: step + 1], t.ys[: step + 1])
                        head.set_data(t.xs[step: step + 1], t.ys[step: step + 1])
                    title.set_text(f"{surface.title} — step {step} of {steps}")
                    writer.grab_frame()
                for _ in range(round(hold_s * fps)):
                    writer.grab_frame()
    finally:
        plt.close(fig)
    return Path(path)

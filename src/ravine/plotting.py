"""Pictures: schedules drawn with matplotlib (an optional dependency: ``pip install ravine[plot]``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ravine.schedules import Schedule


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - exercised only without matplotlib
        raise RuntimeError("plotting needs matplotlib: pip install 'ravine[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically: a crash never leaves a half-written image behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


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
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_race(surface: Any, trajectories: list[Any], path: str | os.PathLike[str]) -> Path:
    """Contour of log10(f − f* + ε) with every contestant's path, the start and the minima marked."""
    import torch

    plt = _pyplot()
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    xs = torch.linspace(x0, x1, 240, dtype=torch.float64)
    ys = torch.linspace(y0, y1, 240, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    z = torch.log10((surface(grid_x, grid_y) - surface.f_min).clamp_min(0) + 1e-6)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    ax.contourf(grid_x.numpy(), grid_y.numpy(), z.numpy(), levels=40, cmap="Greys_r", alpha=0.85)
    ax.contour(grid_x.numpy(), grid_y.numpy(), z.numpy(), levels=20, colors="white", linewidths=0.3, alpha=0.5)
    tab20 = plt.get_cmap("tab20").colors
    colors = [tab20[k] for k in range(0, 20, 2)] + [tab20[k] for k in range(1, 20, 2)]  # 20 distinct
    for i, t in enumerate(trajectories):
        label = f"{t.name} (lr {t.lr:.2g})" + (" — diverged" if t.diverged else "")
        ax.plot(t.xs, t.ys, "-", color=colors[i % 20], linewidth=1.6, label=label)
        ax.plot(t.xs[-1], t.ys[-1], "o", color=colors[i % 20], markersize=4)
    ax.plot(*surface.start, "s", color="white", markeredgecolor="black", markersize=7, label="start")
    for mx, my in surface.minima:
        ax.plot(mx, my, "*", color="gold", markeredgecolor="black", markersize=14)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{surface.title}: {surface.formula}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def animate_race(surface: Any, trajectories: list[Any], path: str | os.PathLike[str], frames: int = 40) -> Path:
    """An animated GIF of the paths growing on the contour (matplotlib + Pillow, no external binary)."""
    import torch
    from matplotlib.animation import PillowWriter

    plt = _pyplot()
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    xs = torch.linspace(x0, x1, 160, dtype=torch.float64)
    ys = torch.linspace(y0, y1, 160, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    z = torch.log10((surface(grid_x, grid_y) - surface.f_min).clamp_min(0) + 1e-6)
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    ax.contourf(grid_x.numpy(), grid_y.numpy(), z.numpy(), levels=30, cmap="Greys_r", alpha=0.85)
    for mx, my in surface.minima:
        ax.plot(mx, my, "*", color="gold", markeredgecolor="black", markersize=13)
    tab20 = plt.get_cmap("tab20").colors
    colors = [tab20[k] for k in range(0, 20, 2)] + [tab20[k] for k in range(1, 20, 2)]
    lines = [ax.plot([], [], "-", color=colors[i % 20], linewidth=1.6, label=t.name)[0]
             for i, t in enumerate(trajectories)]
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title = ax.set_title("", fontsize=9)
    fig.tight_layout()
    steps = len(trajectories[0].xs) - 1 if trajectories else 0
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".gif", dir=target.parent)
    os.close(fd)
    try:
        writer = PillowWriter(fps=12)
        with writer.saving(fig, tmp, dpi=80):
            for k in range(frames + 1):
                step = round(steps * k / frames)
                for line, t in zip(lines, trajectories, strict=True):
                    line.set_data(t.xs[: step + 1], t.ys[: step + 1])
                title.set_text(f"{surface.title} — step {step}")
                writer.grab_frame()
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return target

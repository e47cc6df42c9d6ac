"""Racing ravine's real optimizers down a 2-D surface, and tuning their learning rates fairly.

A contestant is a ravine optimizer class with fixed flags; its learning rate comes from the lr mode
(``tuned``: the shipped log-grid search results, ``shared``: one lr for all, ``default``: each optimizer's
own default). Every optimizer is element-wise, so a batch of start points can race as rows of one tensor:
the tuner runs all its start points at once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ravine.race.surfaces import SURFACES, Surface
from ravine.registry import VARIANTS

CONTESTANTS: dict[str, tuple[Callable[..., torch.optim.Optimizer], float]] = {
    name: (variant.build, variant.default_lr) for name, variant in VARIANTS.items() if variant.in_race
}
"""Contestant name -> (factory(params, lr), the optimizer's default lr)."""

TOLERANCE = 1e-3  # "reached the minimum": f − f* below this
ESCAPE = 10.0  # a run that leaves the plotted window by this many window-widths has diverged
LR_GRID = [10 ** (-4 + k / 4) for k in range(17)]  # 1e-4 … 1, four points per decade
TUNED_FILE = "tuned_lrs.json"


@dataclass
class Trajectory:
    name: str
    lr: float
    xs: list[float]
    ys: list[float]
    losses: list[float]
    diverged: bool

    def summary(self, surface: Surface) -> dict[str, Any]:
        final = self.losses[-1]
        reached = next((i for i, f in enumerate(self.losses) if f - surface.f_min < TOLERANCE), None)
        return {
            "optimizer": self.name,
            "lr": self.lr,
            "final_loss": final,
            "distance": surface.distance_to_nearest_minimum(self.xs[-1], self.ys[-1]),
            "steps_to_tolerance": reached,
            "diverged": self.diverged,
        }


def _outside(surface: Surface, xy: torch.Tensor) -> torch.Tensor:
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    wx, wy = ESCAPE * (x1 - x0), ESCAPE * (y1 - y0)
    return (xy[:, 0] < x0 - wx) | (xy[:, 0] > x1 + wx) | (xy[:, 1] < y0 - wy) | (xy[:, 1] > y1 + wy)


def descend(surface: Surface, name: str, lr: float, starts: list[tuple[float, float]], steps: int,
            noise: float = 0.0, seed: int = 0, deadline: float | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run contestant ``name`` from every start at once; returns positions (steps+1, n, 2), losses, diverged.

    With ``deadline`` (a ``time.monotonic()`` value), raises TimeoutError once it has passed.
    """
    factory = CONTESTANTS[name][0]
    xy = torch.tensor(starts, dtype=torch.float64, requires_grad=True)
    optimizer = factory([xy], lr)
    generator = torch.Generator().manual_seed(seed)
    positions, losses = [xy.detach().clone()], []
    diverged = torch.zeros(len(starts), dtype=torch.bool)
    for _ in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the race on {surface.name} ran out of time")
        optimizer.zero_grad()
        loss = surface(xy[:, 0], xy[:, 1])
        loss.sum().backward()  # rows are independent: each gets its own gradient
        losses.append(loss.detach().clone())
        if noise:
            xy.grad.add_(torch.randn(xy.shape, generator=generator, dtype=xy.dtype), alpha=noise)
        optimizer.step()
        with torch.no_grad():
            bad = ~torch.isfinite(xy).all(dim=1) | _outside(surface, xy)
            diverged |= bad
            xy[diverged] = positions[-1][diverged]  # a diverged run stays where it last was finite
        positions.append(xy.detach().clone())
    with torch.no_grad():
        losses.append(surface(xy[:, 0], xy[:, 1]).detach().clone())
    return torch.stack(positions), torch.stack(losses), diverged


def race(surface: Surface, names: list[str], lrs: dict[str, float], steps: int, start: tuple[float, float],
         noise: float = 0.0, seed: int = 0, deadline: float | None = None) -> list[Trajectory]:
    """One trajectory per contestant from ``start``."""
    out = []
    for name in names:
        positions, losses, diverged = descend(surface, name, lrs[name], [start], steps, noise, seed, deadline)
        out.append(Trajectory(name, lrs[name], positions[:, 0, 0].tolist(), positions[:, 0, 1].tolist(),
                              losses[:, 0].tolist(), bool(diverged[0])))
    return out


def tuning_starts(surface: Surface) -> list[tuple[float, float]]:
    """The standard start and two more, 10% of the window away from it, for a fair lr search."""
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    sx, sy = surface.start
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    return [(sx, sy), (sx + dx, sy - dy), (sx - dx, sy + dy)]


def tune(surface: Surface, name: str, steps: int) -> float:
    """The grid lr minimising the mean over start points of log10(f_final − f* + 1e-12); divergence loses."""
    best, best_score = LR_GRID[0], math.inf
    for lr in LR_GRID:
        _, losses, diverged = descend(surface, name, lr, tuning_starts(surface), steps)
        final = losses[-1]
        if diverged.any() or not torch.isfinite(final).all():
            continue
        score = torch.log10((final - surface.f_min).clamp_min(0) + 1e-12).mean().item()
        if score < best_score - 1e-9:  # ties keep the smaller lr
            best, best_score = lr, score
    return best


def tune_all(steps: int) -> dict[str, Any]:
    from ravine.progress import Progress

    table: dict[str, dict[str, float]] = {}
    with Progress(len(SURFACES) * len(CONTESTANTS), "tuning") as bar:
        for surface in SURFACES.values():
            table[surface.name] = {}
            for name in CONTESTANTS:
                bar.update(f"{surface.name} · {name}")
                table[surface.name][name] = tune(surface, name, steps)
    return {
        "objective": "mean over 3 start points of log10(f_final - f_min + 1e-12); diverged runs excluded",
        "grid": LR_GRID,
        "steps": steps,
        "lrs": table,
    }


def tuned_lrs() -> dict[str, dict[str, float]]:
    """The learning rates shipped with the package (regenerate with ``ravine race tune``)."""
    text = resources.files("ravine.race").joinpath(TUNED_FILE).read_text()
    return json.loads(text)["lrs"]


def package_tuned_path() -> Path:
    return Path(str(resources.files("ravine.race").joinpath(TUNED_FILE)))

"""The slider grids behind the offline page: every contestant raced at several learning rates and momenta, with
and without gradient noise, by the real optimizer classes at ``ravine race`` time.

The page redraws from these runs when a slider moves; it never re-implements an optimizer. One contestant's
grid is one optimizer whose param groups are the grid's cells (see :func:`ravine.race.run.descend`), so a grid
costs about as much Python as a few plain races.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from ravine.race.run import Descent, descend
from ravine.race.surfaces import Surface
from ravine.registry import VARIANTS

LR_MULTIPLIERS = (0.1, 0.316, 1.0, 3.16, 10.0)
"""The lr slider: multiples of the race's lr, two decades around it (half-decade steps)."""

MOMENTA = (0.0, 0.5, 0.9, 0.99)
"""The momentum / β₁ slider's values (each contestant's default, 0.9, is one of them)."""

NOISE_FRACTION = 0.1
"""The page's noisy race, when the command asked for none: σ = this × the median gradient norm over the window."""


@dataclass(frozen=True)
class Knob:
    """The momentum-like hyperparameter a contestant's slider moves: ``momentum`` (SGD) or β₁ (``betas[0]``)."""

    label: str
    key: str
    values: tuple[float, ...]
    default: float
    beta2: float | None = None  # the optimizer's default β₂, for a β₁ knob

    def cell(self, value: float, beta2: float | None = None) -> dict[str, Any]:
        """Param-group overrides setting this knob to ``value`` (and β₂ to ``beta2``, default: the optimizer's)."""
        if self.key == "betas":
            return {"betas": (value, self.beta2 if beta2 is None else beta2)}
        return {"momentum": value}


@cache
def defaults_of(name: str) -> dict[str, Any]:
    optimizer = VARIANTS[name].build([torch.zeros(1, requires_grad=True)], 1e-3)
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


def knob_of(name: str) -> Knob | None:
    """The momentum slider of contestant ``name``; None for those that use no momentum (plain SGD, Adagrad,
    RMSprop). Nesterov needs a momentum above 0, so its slider starts at the next value."""
    group = defaults_of(name)
    if "betas" in group:
        return Knob("β₁", "betas", MOMENTA, group["betas"][0], group["betas"][1])
    if group.get("momentum"):
        values = tuple(v for v in MOMENTA if v > 0) if group.get("nesterov") else MOMENTA
        return Knob("momentum", "momentum", values, group["momentum"])
    return None


def cells_of(name: str, lr: float) -> list[dict[str, Any]]:
    """The grid's param-group overrides, lr-major: cell ``i * len(knob values) + j`` has the ``i``-th lr
    multiplier and the ``j``-th momentum."""
    knob = knob_of(name)
    lrs = [lr * m for m in LR_MULTIPLIERS]
    if knob is None:
        return [{"lr": v} for v in lrs]
    return [{"lr": v, **knob.cell(b)} for v, b in itertools.product(lrs, knob.values)]


def default_cell(name: str) -> int:
    """The cell the page starts on: the race's own lr and the contestant's own momentum."""
    knob = knob_of(name)
    i = LR_MULTIPLIERS.index(1.0)
    return i if knob is None else i * len(knob.values) + knob.values.index(knob.default)


def page_noise(surface: Surface, noise: float) -> float:
    """The σ of the page's noisy race: the command's ``--noise`` if it set one, else :data:`NOISE_FRACTION` of
    the median gradient norm over a 64 × 64 grid of the window (gradients differ by orders of magnitude between
    surfaces, so one σ for all would be noise on one and nothing on another)."""
    if noise > 0:
        return noise
    xs = torch.linspace(*surface.x_range, 64, dtype=torch.float64)
    ys = torch.linspace(*surface.y_range, 64, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx.requires_grad_(True)
    gy.requires_grad_(True)
    gradx, grady = torch.autograd.grad(surface(gx, gy).sum(), (gx, gy))
    median = torch.hypot(gradx, grady).median().item()
    return float(f"{NOISE_FRACTION * median:.2g}") if math.isfinite(median) and median > 0 else 1.0


def explore(surface: Surface, name: str, lr: float, start: tuple[float, float], steps: int, sigma: float,
            seed: int = 0) -> Descent:
    """Contestant ``name``'s grid: :func:`cells_of` × two rows, noise-free and with gradient noise ``sigma``,
    recording gradients and moments for the page's arrows."""
    return descend(surface, name, cells_of(name, lr), [start, start], steps, [0.0, sigma], seed, record=True)

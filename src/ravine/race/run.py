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
from typing import Any, NamedTuple

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
    diverged_at: int | None = None  # the first step whose position was non-finite or far outside the window

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def label(self) -> str:
        """The legend entry: name, lr, and where the run diverged."""
        diverged = f" — diverged at step {self.diverged_at}" if self.diverged_at is not None else ""
        return f"{self.name} (lr {self.lr:.2g}){diverged}"

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


def _outside(surface: Surface, xy: torch.Tensor, margin: float = ESCAPE) -> torch.Tensor:
    """Which positions (``xy[..., :2]``) lie more than ``margin`` window-widths outside the plotted window."""
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    wx, wy = margin * (x1 - x0), margin * (y1 - y0)
    x, y = xy[..., 0], xy[..., 1]
    return (x < x0 - wx) | (x > x1 + wx) | (y < y0 - wy) | (y > y1 + wy)


MOMENT_KEYS = ("momentum_buffer", "exp_avg")  # the state tensor an arrow draws as "momentum / first moment"


class Descent(NamedTuple):
    """Runs of one contestant: ``cells`` (param groups with their own hyperparameters) × ``rows`` (start points,
    each with its own gradient-noise σ). ``positions`` is (steps+1, cells, rows, 2), ``losses`` (steps+1, cells,
    rows), ``diverged_at`` (cells, rows) with −1 for runs that did not diverge. With ``record``, ``grads`` holds
    the gradient each step saw (noise included) and ``moments`` the momentum / first-moment state after the step
    (steps, cells, rows, 2; ``moments`` is None for optimizers without one)."""

    positions: torch.Tensor
    losses: torch.Tensor
    diverged_at: torch.Tensor
    grads: torch.Tensor | None = None
    moments: torch.Tensor | None = None


def descend(surface: Surface, name: str, cells: list[dict[str, Any]], starts: list[tuple[float, float]],
            steps: int, noise: float | list[float] = 0.0, seed: int = 0, deadline: float | None = None,
            record: bool = False) -> Descent:
    """Run contestant ``name`` from every start, once per cell, all in one optimizer.

    Every cell is a param group (``{"lr": …}`` plus any other hyperparameter, e.g. ``"betas"``) holding one
    (rows, 2) tensor; the race's optimizers are element-wise, so each row runs exactly as it would alone. Every
    noisy row sees the same seeded noise draw at each step (common random numbers: cells differ by their
    hyperparameters, not by their luck). A diverged run is held at its last good position. With ``deadline`` (a
    ``time.monotonic()`` value), raises TimeoutError once it has passed.
    """
    sigmas = noise if isinstance(noise, list) else [noise] * len(starts)
    board = torch.tensor(starts, dtype=torch.float64).expand(len(cells), -1, -1).clone()
    grad = torch.zeros_like(board)
    params = list(board.unbind(0))  # views: the optimizer updates the board in place
    for param, g in zip(params, grad.unbind(0), strict=True):
        param.grad = g
    optimizer = VARIANTS[name].build([{"params": [p], **cell} for p, cell in zip(params, cells, strict=True)],
                                     cells[0]["lr"])
    generator = torch.Generator().manual_seed(seed)
    positions, losses, grads, moments = [board.clone()], [], [], []
    diverged_at = torch.full(board.shape[:2], -1, dtype=torch.int64)
    for step in range(1, steps + 1):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"the race on {surface.name} ran out of time")
        xy = board.detach().clone().requires_grad_()
        loss = surface(xy[..., 0], xy[..., 1])
        (g,) = torch.autograd.grad(loss.sum(), xy)  # rows are independent: each gets its own gradient
        grad.copy_(g)
        losses.append(loss.detach())
        if any(sigmas):
            draw = torch.randn(2, generator=generator, dtype=board.dtype)
            for row, sigma in enumerate(sigmas):
                if sigma:
                    grad[:, row].add_(draw, alpha=sigma)
        optimizer.step()
        if record:
            grads.append(grad.clone())
            state = [next((optimizer.state[p][k] for k in MOMENT_KEYS if k in optimizer.state[p]), None)
                     for p in params]
            moments.append(None if any(m is None for m in state) else torch.stack(state))
        with torch.no_grad():
            bad = ~torch.isfinite(board).all(dim=-1) | _outside(surface, board)
            diverged_at[bad & (diverged_at < 0)] = step
            held = diverged_at >= 0
            board[held] = positions[-1][held]  # a diverged run stays where it last was finite
        positions.append(board.clone())
    losses.append(surface(board[..., 0], board[..., 1]))
    has_moments = record and bool(moments) and all(m is not None for m in moments)
    return Descent(torch.stack(positions), torch.stack(losses), diverged_at,
                   torch.stack(grads) if record and grads else None,
                   torch.stack(moments) if has_moments else None)


def trajectory(name: str, lr: float, run: Descent, cell: int, row: int) -> Trajectory:
    """One run of a :class:`Descent` as a :class:`Trajectory`."""
    at = int(run.diverged_at[cell, row])
    return Trajectory(name, lr, run.positions[:, cell, row, 0].tolist(), run.positions[:, cell, row, 1].tolist(),
                      run.losses[:, cell, row].tolist(), at if at >= 0 else None)


def race(surface: Surface, names: list[str], lrs: dict[str, float], steps: int, start: tuple[float, float],
         noise: float = 0.0, seed: int = 0, deadline: float | None = None) -> list[Trajectory]:
    """One trajectory per contestant from ``start``."""
    out = []
    for name in names:
        run = descend(surface, name, [{"lr": lrs[name]}], [start], steps, noise, seed, deadline)
        out.append(trajectory(name, lrs[name], run, 0, 0))
    return out


def tuning_starts(surface: Surface) -> list[tuple[float, float]]:
    """The standard start and two more, 10% of the window away from it along x and along y, towards the window's
    centre (so no start sits on the window's edge, which the tuning objective forbids leaving)."""
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    sx, sy = surface.start
    dx = math.copysign(0.1 * (x1 - x0), (x0 + x1) / 2 - sx)
    dy = math.copysign(0.1 * (y1 - y0), (y0 + y1) / 2 - sy)
    return [(sx, sy), (sx + dx, sy), (sx, sy + dy)]


BLOW_UP_DECADES = 2.0  # a run ending this many decades of f − f* above the best it reached has blown up
OBJECTIVE = ("mean over 3 start points of the area under log10(f − f* + 1e-12) across all steps (lower is "
             "better: it rewards getting close early and staying there); an lr is disqualified if any run leaves "
             f"the plotted window or ends more than {BLOW_UP_DECADES:g} decades of f − f* above the best it "
             "reached (a late blow-up)")


def tuning_score(surface: Surface, positions: torch.Tensor, losses: torch.Tensor) -> float:
    """The tuning objective (:data:`OBJECTIVE`) of runs with ``positions`` (steps+1, n, 2) and ``losses``
    (steps+1, n); ``inf`` when disqualified."""
    if not torch.isfinite(losses).all() or _outside(surface, positions, margin=0.0).any():
        return math.inf
    log_gap = surface.log_gap(losses)
    if (log_gap[-1] > log_gap.amin(0) + BLOW_UP_DECADES).any():
        return math.inf
    return log_gap.mean().item()


def tune(surface: Surface, name: str, steps: int) -> float:
    """The grid lr with the best :func:`tuning_score` over :func:`tuning_starts` (ties keep the smaller lr)."""
    best, best_score = LR_GRID[0], math.inf
    for lr in LR_GRID:
        run = descend(surface, name, [{"lr": lr}], tuning_starts(surface), steps)
        score = tuning_score(surface, run.positions[:, 0], run.losses[:, 0])
        if score < best_score - 1e-9:
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
        "objective": OBJECTIVE,
        "grid": LR_GRID,
        "steps": steps,
        "lrs": table,
    }


def tuned_lrs(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Learning rates by surface and contestant: the table shipped with the package, or one that ``ravine race
    tune`` wrote (``path``). Raises ``ValueError`` naming the file when it is not such a table."""
    if path is None:
        text = resources.files("ravine.race").joinpath(TUNED_FILE).read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ValueError(f"Invalid tuned file: {str(path)!r} ({error.strerror or error})") from None
    try:
        table = json.loads(text)["lrs"]
        ok = isinstance(table, dict) and all(
            isinstance(lrs, dict) and all(isinstance(v, (int, float)) and v > 0 for v in lrs.values())
            for lrs in table.values())
    except (json.JSONDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"Invalid tuned file: {str(path)!r} (expected the JSON that 'ravine race tune' writes, "
                         "with an \"lrs\" table of positive numbers by surface and optimizer)")
    return table


LR_MODES = ("tuned", "shared", "default")


@dataclass(frozen=True)
class RaceSettings:
    """How a race picks learning rates and gradient noise: one rule for ``ravine race``, its page and live mode.

    ``lr_mode``: ``tuned`` (the table ``tuned``, by default the shipped one), ``shared`` (``lr`` for every
    optimizer) or ``default`` (each optimizer's own default lr). ``noise`` is the σ of seeded Gaussian noise
    added to every gradient.
    """

    lr_mode: str = "tuned"
    lr: float = 1e-2
    noise: float = 0.0
    seed: int = 0
    tuned: dict[str, dict[str, float]] | None = None

    def lrs(self, surface: str, names: list[str], scale: float = 1.0) -> dict[str, float]:
        """Each contestant's lr on ``surface``, times ``scale``."""
        if self.lr_mode == "shared":
            return {n: self.lr * scale for n in names}
        if self.lr_mode == "default":
            return {n: CONTESTANTS[n][1] * scale for n in names}
        table = (self.tuned if self.tuned is not None else tuned_lrs()).get(surface, {})
        return {n: table.get(n, CONTESTANTS[n][1]) * scale for n in names}

    def describe(self) -> str:
        """One line for the page and the tables, e.g. "Learning rates: shared (0.05); gradient noise σ = 0"."""
        lrs = f"shared ({self.lr:g})" if self.lr_mode == "shared" else self.lr_mode
        noise = f"gradient noise σ = {self.noise:g}" + (f" (seed {self.seed})" if self.noise else "")
        return f"Learning rates: {lrs}; {noise}"

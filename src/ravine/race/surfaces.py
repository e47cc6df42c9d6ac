"""2-D loss surfaces for the optimizer race, each with its formula, domain, start point and exact minima.

Formulas and minima follow the Virtual Library of Simulation Experiments (Surjanovic & Bingham,
sfu.ca/~ssurjano; Goldstein–Price in Picheny et al.'s log-standardised form). Minima and f* that are not
round numbers are stored to full double precision (found by Newton's method from the published rounded values),
so "f − f*" never goes negative and distances to a minimum do not bottom out; the tests check each one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Surface:
    name: str
    title: str
    formula: str
    fn: Callable[[Tensor, Tensor], Tensor]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    f_min: float
    note: str = ""

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)

    def log_gap_grid(self, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
        """The window as a ``resolution``² grid: x (1-D), y (1-D) and log10(f − f* + 1e-6) (rows follow y),
        the scale every picture of the race uses, since f spans several orders of magnitude."""
        xs = torch.linspace(*self.x_range, resolution, dtype=torch.float64)
        ys = torch.linspace(*self.y_range, resolution, dtype=torch.float64)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return xs, ys, torch.log10((self(grid_x, grid_y) - self.f_min).clamp_min(0) + 1e-6)

    def log_gap(self, losses: Tensor) -> Tensor:
        """log10(f − f* + 1e-12) of ``losses``: the scale the tuner judges runs on and the page draws them on."""
        return torch.log10((losses - self.f_min).clamp_min(0) + 1e-12)

    def distance_to_nearest_minimum(self, x: float, y: float) -> float:
        return min(math.hypot(x - mx, y - my) for mx, my in self.minima)


def _rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _beale(x: Tensor, y: Tensor) -> Tensor:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _booth(x: Tensor, y: Tensor) -> Tensor:
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _himmelblau(x: Tensor, y: Tensor) -> Tensor:
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _rastrigin(x: Tensor, y: Tensor) -> Tensor:
    return 20 + x**2 - 10 * torch.cos(2 * math.pi * x) + y**2 - 10 * torch.cos(2 * math.pi * y)


_THETA, _KAPPA = math.pi / 4, 50.0


def _rotated_ravine(x: Tensor, y: Tensor) -> Tensor:
    u = x * math.cos(_THETA) + y * math.sin(_THETA)
    v = -x * math.sin(_THETA) + y * math.cos(_THETA)
    return 0.5 * (u**2 + _KAPPA * v**2)


def _saddle(x: Tensor, y: Tensor) -> Tensor:
    return x**2 + 0.25 * y**4 - 0.5 * y**2


def _goldstein_price(x: Tensor, y: Tensor) -> Tensor:
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y + 27 * y**2)
    return a * b


def _log_goldstein_price(u: Tensor, v: Tensor) -> Tensor:
    return (torch.log(_goldstein_price(4 * u - 2, 4 * v - 2)) - 8.6928) / 2.4269


def _six_hump_camel(x: Tensor, y: Tensor) -> Tensor:
    return (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2


def _styblinski_tang(x: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((x**4 - 16 * x**2 + 5 * x) + (y**4 - 16 * y**2 + 5 * y))


SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface("rosenbrock", "Rosenbrock", "(1 − x)² + 100(y − x²)²", _rosenbrock, (-2.0, 2.0), (-1.0, 3.0),
                (-1.2, 1.0), ((1.0, 1.0),), 0.0, "a curved, badly conditioned valley (κ ≈ 2500 at the minimum)"),
        Surface("beale", "Beale", "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²", _beale,
                (-4.5, 4.5), (-4.5, 4.5), (1.0, 1.0), ((3.0, 0.5),), 0.0, "flat plateaus and sharp ridges"),
        Surface("booth", "Booth", "(x + 2y − 7)² + (2x + y − 5)²", _booth, (-10.0, 10.0), (-10.0, 10.0),
                (-8.0, 8.0), ((1.0, 3.0),), 0.0, "a plain quadratic bowl (κ = 9)"),
        Surface("himmelblau", "Himmelblau", "(x² + y − 11)² + (x + y² − 7)²", _himmelblau, (-5.0, 5.0),
                (-5.0, 5.0), (-0.27, -0.9),
                ((3.0, 2.0), (-2.805118086952745, 3.131312518250573), (-3.779310253377747, -3.2831859912861696),
                 (3.5844283403304917, -1.8481265269644034)), 0.0,
                "four global minima; the start sits next to the local maximum: which basin does each pick?"),
        Surface("rastrigin", "Rastrigin", "20 + x² − 10cos(2πx) + y² − 10cos(2πy)", _rastrigin, (-5.12, 5.12),
                (-5.12, 5.12), (-2.0, 3.5), ((0.0, 0.0),), 0.0, "a local minimum near every lattice point"),
        Surface("ravine", "Rotated ravine", "½(u² + 50v²), (u, v) = (x, y) rotated by 45°", _rotated_ravine,
                (-2.0, 2.0), (-2.0, 2.0), (-1.5, -0.5), ((0.0, 0.0),), 0.0,
                "ill-conditioned and rotated, so per-coordinate step sizes cannot undo the conditioning"),
        Surface("saddle", "Escape the saddle", "x² + ¼y⁴ − ½y²", _saddle, (-2.0, 2.0), (-2.0, 2.0), (-1.5, 1e-3),
                ((0.0, 1.0), (0.0, -1.0)), -0.25, "a saddle at the origin, bounded below"),
        Surface("goldstein_price", "Goldstein–Price (log-standardised)",
                "(log GP(4u − 2, 4v − 2) − 8.6928)/2.4269", _log_goldstein_price, (0.0, 1.0), (0.0, 1.0),
                (0.15, 0.85), ((0.5, 0.25),), -3.1291720760360504, "Picheny et al.'s scaling of Goldstein–Price"),
        Surface("six_hump_camel", "Six-hump camel", "(4 − 2.1x² + x⁴/3)x² + xy + (−4 + 4y²)y²", _six_hump_camel,
                (-3.0, 3.0), (-2.0, 2.0), (-1.5, 1.0),
                ((0.08984201310031806, -0.7126564030207396), (-0.08984201310031806, 0.7126564030207396)),
                -1.0316284534898774,
                "two global minima and four local ones"),
        Surface("styblinski_tang", "Styblinski–Tang", "½[(x⁴ − 16x² + 5x) + (y⁴ − 16y² + 5y)]", _styblinski_tang,
                (-5.0, 5.0), (-5.0, 5.0), (0.5, 0.5), ((-2.9035340277711774, -2.9035340277711774),),
                -78.33233140754282,
                "from this start small steps settle in the worse local minimum near (2.75, 2.75)"),
    )
}
"""The race's surfaces by name."""

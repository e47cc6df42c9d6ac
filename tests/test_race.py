"""The optimizer race: surfaces with exact minima, the real optimizers' trajectories, tuned lrs, the command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ravine.cli import main
from ravine.race import CONTESTANTS, SURFACES, race, tuned_lrs
from ravine.race.run import LR_GRID, tune

NAMES = list(SURFACES)


@pytest.mark.parametrize("name", NAMES)
def test_every_stated_minimum_is_a_minimum(name):
    surface = SURFACES[name]
    for mx, my in surface.minima:
        xy = torch.tensor([mx, my], dtype=torch.float64, requires_grad=True)
        value = surface(xy[0], xy[1])
        value.backward()
        assert value.item() == pytest.approx(surface.f_min, abs=2e-4), (mx, my)
        assert xy.grad.norm().item() < 5e-3 * max(1.0, abs(surface.f_min)), (mx, my, xy.grad)
        # no lower value in a small neighbourhood (the stated points are minima, not saddles)
        g = torch.linspace(-1e-2, 1e-2, 21, dtype=torch.float64)
        around = surface(mx + g[:, None], my + g[None, :])
        assert around.min().item() >= surface.f_min - 2e-4
    # and nothing on a fine grid of the plotted window goes below f*
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, 301, dtype=torch.float64),
                            torch.linspace(y0, y1, 301, dtype=torch.float64), indexing="ij")
    assert surface(gx, gy).min().item() >= surface.f_min - 2e-4


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_over_the_plotted_domain(name):
    surface = SURFACES[name]
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, 101, dtype=torch.float64),
                            torch.linspace(y0, y1, 101, dtype=torch.float64), indexing="ij")
    gx.requires_grad_(True)
    gy.requires_grad_(True)
    surface(gx, gy).sum().backward()
    assert torch.isfinite(gx.grad).all() and torch.isfinite(gy.grad).all()
    assert x0 <= surface.start[0] <= x1 and y0 <= surface.start[1] <= y1


def test_shipped_tuned_lrs_cover_every_surface_and_optimizer_from_the_grid():
    lrs = tuned_lrs()
    assert set(lrs) == set(SURFACES)
    for table in lrs.values():
        assert set(table) == set(CONTESTANTS)
        assert all(any(math.isclose(v, g) for g in LR_GRID) for v in table.values())


def test_tuning_is_deterministic_and_reproduces_the_shipped_value():
    # Booth with plain SGD: cheap, and the shipped table must be what the tuner computes today.
    first, second = tune(SURFACES["booth"], "SGD", 300), tune(SURFACES["booth"], "SGD", 300)
    assert first == second == tuned_lrs()["booth"]["SGD"]


def test_race_uses_the_real_optimizers_and_tuned_adam_solves_booth():
    (adam, lion) = race(SURFACES["booth"], ["Adam", "Lion"], {"Adam": 0.1, "Lion": 0.01}, 300, (-8.0, 8.0))
    assert adam.losses[0] == pytest.approx(SURFACES["booth"](torch.tensor(-8.0), torch.tensor(8.0)).item())
    assert adam.summary(SURFACES["booth"])["distance"] < 0.05
    # Lion moves every coordinate by exactly ±lr per step (sign update, no weight decay)
    steps = {round(abs(b - a), 9) for a, b in zip(lion.xs[:5], lion.xs[1:6], strict=True)}
    assert steps == {0.01}


def test_gradient_noise_is_seeded():
    a = race(SURFACES["booth"], ["SGD"], {"SGD": 0.01}, 50, (0.0, 0.0), noise=1.0, seed=3)[0]
    b = race(SURFACES["booth"], ["SGD"], {"SGD": 0.01}, 50, (0.0, 0.0), noise=1.0, seed=3)[0]
    c = race(SURFACES["booth"], ["SGD"], {"SGD": 0.01}, 50, (0.0, 0.0), noise=1.0, seed=4)[0]
    assert a.xs == b.xs and a.xs != c.xs


def test_divergence_is_reported_not_hidden():
    (run,) = race(SURFACES["rosenbrock"], ["SGD"], {"SGD": 1.0}, 50, (-1.2, 1.0))
    assert run.diverged and all(math.isfinite(v) for v in run.xs)


def test_race_command_writes_tables_json_and_pictures(tmp_path, capsys):
    out = tmp_path / "race"
    assert main(["race", "--surfaces", "booth,himmelblau", "--optimizers", "Adam,Lion,Lookahead(Adam)",
                 "--steps", "60", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "## Booth" in printed.out and "| Lookahead(Adam) |" in printed.out
    assert "[2/2] Himmelblau" in printed.err
    data = json.loads((out / "race.json").read_text())
    assert set(data["surfaces"]) == {"booth", "himmelblau"}
    assert len(data["surfaces"]["booth"]["paths"]["Adam"]["x"]) == 61
    for name in ("booth", "himmelblau"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    gif = (out / "race.gif").read_bytes()
    assert gif[:6] == b"GIF89a" and gif.count(b"\x21\xf9\x04") > 10  # animated: many frames


@pytest.mark.parametrize(("argv", "message"), [
    (["--surfaces", "rosenbrok"], "Invalid surfaces: ['rosenbrok']"),
    (["--optimizers", "Adamm"], "Invalid optimizers: ['Adamm']"),
    (["--start", "1;2"], "Invalid start: '1;2'"),
    (["--start", "nan,1"], "coordinates must be finite"),
    (["--lr-mode", "shared", "--lr", "-1"], "Invalid lr: -1.0"),
    (["--noise", "-0.5"], "Invalid noise: -0.5"),
])
def test_race_command_rejects_bad_input(argv, message, capsys, tmp_path):
    assert main(["race", *argv, "-o", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err

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
        # stored to full double precision: f* is the value there, and the gradient vanishes to rounding
        assert value.item() == pytest.approx(surface.f_min, rel=1e-14, abs=1e-14), (mx, my)
        assert xy.grad.norm().item() < 1e-10 * max(1.0, abs(surface.f_min)), (mx, my, xy.grad)
        # no lower value in a small neighbourhood (the stated points are minima, not saddles)
        g = torch.linspace(-1e-2, 1e-2, 21, dtype=torch.float64)
        around = surface(mx + g[:, None], my + g[None, :])
        assert around.min().item() >= surface.f_min - 1e-14 * max(1.0, abs(surface.f_min))
    # and nothing on a fine grid of the plotted window goes below f*
    (x0, x1), (y0, y1) = surface.x_range, surface.y_range
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, 301, dtype=torch.float64),
                            torch.linspace(y0, y1, 301, dtype=torch.float64), indexing="ij")
    assert surface(gx, gy).min().item() >= surface.f_min - 1e-14 * max(1.0, abs(surface.f_min))


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
    assert run.diverged_at is not None and f"diverged at step {run.diverged_at}" in run.label
    # On the page its lines end where it diverged, instead of running on flat where it was held.
    from ravine.race.pack import race_and_pack, unpack_run

    _, index = race_and_pack(SURFACES["rosenbrock"], ["SGD"], {"SGD": 1.0}, 50, (-1.2, 1.0))
    stored = unpack_run(index, index["contestants"][0]["runs"][2])  # the middle lr multiplier: 1
    assert stored["diverged_at"] == run.diverged_at == stored["n"] == len(stored["x"])


@pytest.mark.parametrize("noise", [0.0, 0.7])
def test_the_race_is_its_grids_default_cell_bit_for_bit(noise):
    """The tables, PNGs and GIF show the grid's default cell: the same numbers as racing each optimizer alone."""
    from ravine.race.pack import race_and_pack

    surface = SURFACES["himmelblau"]
    lrs = tuned_lrs()["himmelblau"]
    alone = race(surface, list(CONTESTANTS), lrs, 60, surface.start, noise, 3)
    from_grid, _ = race_and_pack(surface, list(CONTESTANTS), lrs, 60, surface.start, noise, 3)
    for a, b in zip(alone, from_grid, strict=True):
        assert (a.name, a.lr, a.xs, a.ys, a.losses, a.diverged_at) == (b.name, b.lr, b.xs, b.ys, b.losses,
                                                                        b.diverged_at)


def test_each_grid_cell_is_the_optimizer_with_those_hyperparameters():
    """A cell (a param group of one optimizer) runs exactly as a fresh optimizer built with its settings."""
    from ravine.race.explore import cells_of, explore, page_noise
    from ravine.registry import VARIANTS

    surface = SURFACES["rosenbrock"]
    sigma = page_noise(surface, 0.0)
    for name in ("Nesterov", "Lion", "Schedule-Free AdamW", "Lookahead(Adam)"):
        grid = explore(surface, name, 0.01, surface.start, 30, sigma, seed=5)
        for cell, settings in list(enumerate(cells_of(name, 0.01)))[::3]:
            xy = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
            optimizer = VARIANTS[name].build([{"params": [xy], **settings}], settings["lr"])
            for step in range(30):
                optimizer.zero_grad()
                surface(xy[0], xy[1]).backward()
                optimizer.step()
                if grid.diverged_at[cell, 0] == step + 1:
                    break
                assert torch.equal(xy.detach(), grid.positions[step + 1, cell, 0]), (name, settings, step)


def _race(tmp_path, *argv):
    return main(["race", "--surfaces", "booth", "--optimizers", "SGD,Adam", "--steps", "20", *argv,
                 "-o", str(tmp_path / "race")])


def test_lr_alone_means_a_shared_lr(tmp_path):
    assert _race(tmp_path, "--lr", "0.05") == 0
    data = json.loads((tmp_path / "race" / "race.json").read_text())
    assert data["lr_mode"] == "shared"
    assert {r["lr"] for r in data["surfaces"]["booth"]["rows"]} == {0.05}
    assert "Learning rates: shared (0.05)" in (tmp_path / "race" / "race.html").read_text()


def test_race_reads_a_tuned_file_and_race_tune_writes_one_to_its_output_folder(tmp_path, monkeypatch, capsys):
    from ravine.race import cli

    table = {"lrs": {"booth": {"SGD": 0.0123, "Adam": 0.456}}}
    monkeypatch.setattr(cli, "tune_all", lambda steps: table)  # the search itself is tested above
    assert main(["race", "tune", "-o", str(tmp_path / "tuned")]) == 0
    written = tmp_path / "tuned" / "tuned_lrs.json"
    assert json.loads(written.read_text()) == table and f"--tuned {written}" in capsys.readouterr().out
    assert _race(tmp_path, "--tuned", str(written)) == 0
    rows = json.loads((tmp_path / "race" / "race.json").read_text())["surfaces"]["booth"]["rows"]
    assert {r["optimizer"]: r["lr"] for r in rows} == {"SGD": 0.0123, "Adam": 0.456}


def test_an_interrupted_race_leaves_the_previous_output_whole(tmp_path, monkeypatch, capsys):
    import ravine.plotting

    assert _race(tmp_path) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "race").iterdir()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ravine.plotting, "animate_race", interrupt)  # after the PNGs, before the page
    assert _race(tmp_path, "--lr", "0.3") == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "race").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["race"]  # no temporary folder left behind


def test_race_refuses_an_output_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "race").mkdir()
    (tmp_path / "race" / "thesis.tex").write_text("mine")
    assert _race(tmp_path) == 2
    assert "holds files this command did not write (thesis.tex)" in capsys.readouterr().err
    assert (tmp_path / "race" / "thesis.tex").read_text() == "mine"


def test_serve_on_a_busy_port_fails_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    import socket

    from ravine.race import cli

    monkeypatch.setattr(cli, "race_and_pack", lambda *a, **k: pytest.fail("raced before checking the port"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert _race(tmp_path, "--serve", "--port", str(busy.getsockname()[1])) == 2
    err = capsys.readouterr().err
    assert "cannot serve on port" in err and "in use" in err and "Traceback" not in err
    assert not (tmp_path / "race").exists()


def test_race_command_writes_tables_json_and_pictures(tmp_path, capsys):
    out = tmp_path / "race"
    assert main(["race", "--surfaces", "booth,himmelblau", "--optimizers", "Adam,Lion,Lookahead(Adam)",
                 "--steps", "60", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "## Booth" in printed.out and "| Lookahead(Adam) |" in printed.out
    assert "[6/6] Himmelblau: Lookahead(Adam), lr × momentum grid" in printed.err
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
    (["--lr", "0.5", "--lr-mode", "tuned"], "cannot go with --lr-mode tuned"),
    (["--tuned", "missing.json"], "Invalid tuned file: 'missing.json'"),
    (["--tuned", "x.json", "--lr-mode", "default"], "cannot go with --lr-mode default"),
    (["--serve", "--port", "70000"], "Invalid port: 70000"),
])
def test_race_command_rejects_bad_input(argv, message, capsys, tmp_path):
    assert main(["race", *argv, "-o", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err

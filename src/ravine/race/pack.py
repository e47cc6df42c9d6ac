"""A surface's race in the compact form the page reads: one gzip-compressed, base64-encoded block of 16-bit
integers per surface, and a small JSON index into it.

Every series is quantised to 16 bits over a stated range and stored as successive differences (mod 2¹⁶), so
smooth trajectories compress to a few bits a point; the page undoes both in a few lines of JavaScript.
Resolution: positions 1/21,845 of the window (the range is the window and one window-width around it),
log10(f − f*) 5·10⁻⁴ decades, arrow angles 0.09° and arrow lengths 2 % (log scale, 12 bits).
A run is stored up to the step it diverged at, so its lines end there.
"""

from __future__ import annotations

import base64
import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ravine.race.colours import colour_of
from ravine.race.explore import LR_MULTIPLIERS, default_cell, explore, knob_of, page_noise
from ravine.race.families import curated
from ravine.race.run import Descent, Trajectory, trajectory
from ravine.race.surfaces import Surface

GAP_RANGE = (-12.0, 20.0)  # log10(f − f* + 1e-12)
ARROW_LOG_RANGE = (-24.0, 12.0)  # log10 of an arrow's length; 0 is stored as the floor
ARROW_BITS = 12  # arrows are drawn and read to two digits: 12 bits keep 0.09° and 2 %, and halve their bytes
SHADE = 100  # the shaded background and the 3-D mesh: a SHADE × SHADE grid of log10(f − f*)
CONTOUR_GRID = 200
CONTOUR_LEVELS = 24
LEVELS = 65535


def quantise(values: np.ndarray, low: float, high: float, bits: int = 16) -> np.ndarray:
    """``values`` clipped to [low, high] as integers 0…2**bits − 1 (non-finite values become ``high``)."""
    scaled = (np.nan_to_num(values.astype(np.float64), nan=high, posinf=high, neginf=low) - low) / (high - low)
    return np.round(np.clip(scaled, 0.0, 1.0) * ((1 << bits) - 1)).astype(np.int64)


@dataclass
class Packer:
    """Collects 16-bit series; :meth:`add` returns where a series starts (in 16-bit units)."""

    chunks: list[np.ndarray] = field(default_factory=list)
    size: int = 0

    def add(self, codes: np.ndarray) -> int:
        codes = np.diff(codes, prepend=0)  # stored as successive differences
        offset = self.size
        self.chunks.append((codes % (LEVELS + 1)).astype("<u2"))
        self.size += len(codes)
        return offset

    def blob(self) -> str:
        raw = np.concatenate(self.chunks).tobytes() if self.chunks else b""
        return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def _arrows(packer: Packer, vectors: torch.Tensor) -> list[int]:
    """Angle and log-length series of 2-D vectors (k, 2): two offsets."""
    v = vectors.numpy()
    angle = quantise(np.arctan2(v[:, 1], v[:, 0]), -math.pi, math.pi, ARROW_BITS)
    with np.errstate(divide="ignore"):
        length = quantise(np.log10(np.hypot(v[:, 0], v[:, 1])), *ARROW_LOG_RANGE, ARROW_BITS)
    return [packer.add(angle), packer.add(length)]


def _run(packer: Packer, surface: Surface, run: Descent, cell: int, row: int, window: list[float]) -> list[int]:
    """One run: [n points, diverged_at or −1, offset of x, y, gap, and of the arrows' series]."""
    at = int(run.diverged_at[cell, row])
    n = run.positions.shape[0] if at < 0 else at
    xy = run.positions[:n, cell, row].numpy()
    x0, x1, y0, y1 = window
    w, h = x1 - x0, y1 - y0
    offsets = [packer.add(quantise(xy[:, 0], x0 - w, x1 + w)), packer.add(quantise(xy[:, 1], y0 - h, y1 + h)),
               packer.add(quantise(surface.log_gap(run.losses[:n, cell, row]).numpy(), *GAP_RANGE))]
    k = min(n, run.positions.shape[0] - 1)  # the steps taken from drawn points
    if run.grads is not None:
        offsets += _arrows(packer, run.grads[:k, cell, row])
    if run.moments is not None:
        offsets += _arrows(packer, run.moments[:k, cell, row])
    return [n, at, *offsets]


def _background(packer: Packer, surface: Surface) -> dict[str, Any]:
    """The shaded grid and the contour lines of log10(f − f*), in the window's coordinates."""
    import contourpy

    _, _, shade = surface.log_gap_grid(SHADE)
    low, high = float(shade.min()), float(shade.max())
    out: dict[str, Any] = {"zrange": [low, high], "shade": packer.add(quantise(shade.numpy().ravel(), low, high))}
    xs, ys, z = surface.log_gap_grid(CONTOUR_GRID)
    generator = contourpy.contour_generator(xs.numpy(), ys.numpy(), z.numpy(), line_type="Separate")
    x0, x1, y0, y1 = surface.x_range + surface.y_range
    lines = []
    levels = np.linspace(low, high, CONTOUR_LEVELS + 2)[1:-1]
    for level, value in enumerate(levels):
        for line in generator.lines(float(value)):
            if len(line) < 2:
                continue
            lines.append([level, len(line), packer.add(quantise(line[:, 0], x0, x1)),
                          packer.add(quantise(line[:, 1], y0, y1))])
    out["contours"] = lines
    return out


def pack_surface(surface: Surface, grids: dict[str, tuple[float, Descent]], sigma: float, steps: int,
                 start: tuple[float, float], live: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The page's index and block for one surface; ``grids`` maps each contestant to (its lr, its grid from
    :func:`ravine.race.explore.explore`). A live race (``live``: each contestant's settings) has one run per
    contestant instead of a grid."""
    packer = Packer()
    window = [*surface.x_range, *surface.y_range]
    contestants = []
    middle = LR_MULTIPLIERS.index(1.0)
    for name, (lr, run) in grids.items():
        knob = knob_of(name)
        width = 1 if knob is None else len(knob.values)
        cells = run.positions.shape[1]
        contestants.append({
            "name": name, "colour": colour_of(name), "lr": lr,
            "knob": None if knob is None else {"label": knob.label, "values": list(knob.values),
                                               "default": knob.default, "beta2": knob.beta2},
            "runs": [_run(packer, surface, run, c, 0, window) for c in range(cells)],
            "noisy": [_run(packer, surface, run, middle * width + j, 1, window) for j in range(width)
                      if live is None],
        })
        if live is not None:
            contestants[-1]["settings"] = live[name]
    index: dict[str, Any] = {
        "name": surface.name, "title": surface.title, "formula": surface.formula, "note": surface.note,
        "window": window, "minima": [list(m) for m in surface.minima], "start": list(start), "sigma": sigma,
        "steps": steps, "gap_range": list(GAP_RANGE), "arrow_range": list(ARROW_LOG_RANGE),
        "arrow_bits": ARROW_BITS, "shade_size": SHADE,
        "curated": curated(surface.name, list(grids)), "contestants": contestants, "live": live is not None,
        "typed": surface.name == "typed",
    }
    index.update(_background(packer, surface))
    index["blob"] = packer.blob()
    return index


def race_and_pack(surface: Surface, names: list[str], lrs: dict[str, float], steps: int,
                  start: tuple[float, float], noise: float = 0.0, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> tuple[list[Trajectory], dict[str, Any]]:
    """Race every contestant's grid on ``surface`` and pack it for the page.

    Returns the race itself (each contestant at its own lr and momentum, with gradient noise ``noise``: the runs
    the tables, PNGs and GIF show, bit for bit what :func:`ravine.race.run.race` computes) and the page's index.
    """
    sigma = page_noise(surface, noise)
    row = 1 if noise > 0 else 0  # the grid's noisy row has σ = noise when the command asked for noise
    grids, trajectories = {}, []
    for name in names:
        if progress is not None:
            progress(name)
        grids[name] = (lrs[name], explore(surface, name, lrs[name], start, steps, sigma, seed))
        trajectories.append(trajectory(name, lrs[name], grids[name][1], default_cell(name), row))
    return trajectories, pack_surface(surface, grids, sigma, steps, start)


def _decode(raw: np.ndarray, offset: int, n: int, low: float, high: float, bits: int = 16) -> np.ndarray:
    codes = np.cumsum(raw[offset:offset + n].astype(np.int64)) % (LEVELS + 1)
    return low + codes / ((1 << bits) - 1) * (high - low)


def unpack_run(index: dict[str, Any], record: list[int]) -> dict[str, Any]:
    """One run of a packed surface back as arrays (what the page draws): ``x``, ``y``, ``gap`` (log10(f − f*)),
    and, where stored, ``grad`` and ``moment`` as (angle, log10 length) pairs of arrays."""
    raw = np.frombuffer(gzip.decompress(base64.b64decode(index["blob"])), dtype="<u2")
    n, at, ox, oy, og, *arrows = record
    x0, x1, y0, y1 = index["window"]
    w, h = x1 - x0, y1 - y0
    k = min(n, index["steps"])
    out: dict[str, Any] = {"n": n, "diverged_at": None if at < 0 else at,
                           "x": _decode(raw, ox, n, x0 - w, x1 + w), "y": _decode(raw, oy, n, y0 - h, y1 + h),
                           "gap": _decode(raw, og, n, *GAP_RANGE)}
    for name, pair in (("grad", arrows[0:2]), ("moment", arrows[2:4])):
        if pair:
            out[name] = (_decode(raw, pair[0], k, -math.pi, math.pi, ARROW_BITS),
                         _decode(raw, pair[1], k, *ARROW_LOG_RANGE, ARROW_BITS))
    return out

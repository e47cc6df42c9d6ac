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

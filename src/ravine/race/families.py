"""Families of contestants, and the few shown by default, so a race reads as a handful of lines, not twelve.

The page starts on each surface's curated set (one or two per family, chosen to show what the surface teaches)
and switches to a family or to every optimizer; the legend still toggles single ones. The PNGs and the GIF draw
the curated set unless the command names its optimizers.
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "plain and momentum SGD": ("SGD", "Momentum", "Nesterov"),
    "adaptive": ("Adagrad", "RMSprop", "Adam", "AMSGrad", "AdamW", "ADOPT"),
    "sign and normalised": ("Lion",),
    "wrappers and averaging": ("Lookahead(Adam)", "Schedule-Free AdamW"),
}

_DEFAULT = ("SGD", "Momentum", "Adam", "Lion", "Schedule-Free AdamW")
CURATED: dict[str, tuple[str, ...]] = {
    # per-coordinate step sizes cannot undo a rotation: RMSprop beside Adam shows it
    "ravine": ("SGD", "Momentum", "RMSprop", "Adam", "Lion"),
    # where does the small-step SGD settle, against the methods that carry speed?
    "styblinski_tang": ("SGD", "Momentum", "Nesterov", "Adam", "Lion"),
}
"""Surfaces whose curated set differs from the default (SGD, Momentum, Adam, Lion, Schedule-Free AdamW)."""


def family_of(name: str) -> str | None:
    return next((family for family, names in FAMILIES.items() if name in names), None)


def curated(surface: str, names: list[str]) -> list[str]:
    """The curated contestants of ``surface`` among ``names`` (all of ``names`` when none of them is curated)."""
    chosen = set(CURATED.get(surface, _DEFAULT))
    return [n for n in names if n in chosen] or list(names)

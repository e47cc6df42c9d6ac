"""Create any ravine optimizer by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ravine.lookahead import Lookahead
from ravine.registry import ALGORITHMS, canonical

__all__ = ["available_optimizers", "create_optimizer"]

# Lookahead wraps optimizers that step once per step() call; LBFGS runs a whole search through its closure.
_WRAPPABLE = [name for name, cls in ALGORITHMS.items() if getattr(cls, "kind", "elementwise") != "closure"]


def available_optimizers() -> list[str]:
    """Every name :func:`create_optimizer` accepts: the optimizers and their ``lookahead_`` wrapped forms."""
    return [*ALGORITHMS, *(f"lookahead_{name}" for name in _WRAPPABLE)]


def create_optimizer(name: str, params_or_model: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by (case-insensitive) name.

    ``params_or_model`` is anything the optimizer accepts, or an ``nn.Module`` (its parameters are used).
    For ``lookahead_<name>``, ``k`` and ``alpha`` go to Lookahead and the rest to the inner optimizer::

        ravine.create_optimizer("lookahead_adamw", model, lr=1e-3, k=5, alpha=0.5)
    """
    key = canonical(name)
    params = params_or_model.parameters() if isinstance(params_or_model, nn.Module) else params_or_model
    inner = canonical(key.removeprefix("lookahead_"))
    if key.startswith("lookahead_") and inner in _WRAPPABLE:
        lookahead_kwargs = {k: kwargs.pop(k) for k in ("k", "alpha") if k in kwargs}
        return Lookahead(ALGORITHMS[inner](params, **kwargs), **lookahead_kwargs)
    if key not in ALGORITHMS:
        raise ValueError(f"Invalid optimizer name: {name!r} (choose one of: {', '.join(available_optimizers())})")
    return ALGORITHMS[key](params, **kwargs)

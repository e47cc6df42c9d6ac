"""Create any ravine optimizer by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ravine.lookahead import Lookahead
from ravine.registry import ALGORITHMS, MODEL_ROUTERS, canonical

__all__ = ["available_optimizers", "create_optimizer"]

# Lookahead wraps optimizers that step once per step() call; LBFGS runs a whole search through its closure.
_WRAPPABLE = [name for name, cls in ALGORITHMS.items() if getattr(cls, "kind", "elementwise") != "closure"]


def available_optimizers() -> list[str]:
    """Every name :func:`create_optimizer` accepts: the optimizers and their ``lookahead_`` wrapped forms."""
    return [*ALGORITHMS, *(f"lookahead_{name}" for name in _WRAPPABLE)]


def create_optimizer(name: str, params_or_model: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by (case-insensitive) name.

    ``params_or_model`` is anything the optimizer accepts, or an ``nn.Module`` (its parameters are used; for
    ``muonwithauxadam`` they are routed by :func:`ravine.muon_param_groups`, which takes the options).
    For ``lookahead_<name>``, ``k`` and ``alpha`` go to Lookahead and the rest to the inner optimizer::

        ravine.create_optimizer("lookahead_adamw", model, lr=1e-3, k=5, alpha=0.5)
        ravine.create_optimizer("muon_with_aux_adam", model, lr=0.02, adam_lr=3e-4)
    """
    key = canonical(name)
    inner = canonical(key.removeprefix("lookahead_"))
    wrapped = key.startswith("lookahead_") and inner in _WRAPPABLE
    if not wrapped and key not in ALGORITHMS:
        raise ValueError(f"Invalid optimizer name: {name!r} (choose one of: {', '.join(available_optimizers())})")
    lookahead_kwargs = {k: kwargs.pop(k) for k in ("k", "alpha") if k in kwargs} if wrapped else {}
    algorithm = inner if wrapped else key
    if isinstance(params_or_model, nn.Module) and algorithm in MODEL_ROUTERS:
        optimizer = ALGORITHMS[algorithm](MODEL_ROUTERS[algorithm](params_or_model, **kwargs))
    else:
        params = params_or_model.parameters() if isinstance(params_or_model, nn.Module) else params_or_model
        optimizer = ALGORITHMS[algorithm](params, **kwargs)
    return Lookahead(optimizer, **lookahead_kwargs) if wrapped else optimizer

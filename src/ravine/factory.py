"""Create any ravine optimizer by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ravine.algorithms import ADOPT, SGD, Adagrad, Adam, AdamW, Lion, RMSprop
from ravine.lookahead import Lookahead

__all__ = ["available_optimizers", "create_optimizer"]

_BASE: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "lion": Lion,
    "adopt": ADOPT,
}


def available_optimizers() -> list[str]:
    """Every name :func:`create_optimizer` accepts: the optimizers and their ``lookahead_`` wrapped forms."""
    return [*_BASE, *(f"lookahead_{name}" for name in _BASE)]


def create_optimizer(name: str, params_or_model: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by (case-insensitive) name.

    ``params_or_model`` is anything the optimizer accepts, or an ``nn.Module`` (its parameters are used).
    For ``lookahead_<name>``, ``k`` and ``alpha`` go to Lookahead and the rest to the inner optimizer::

        ravine.create_optimizer("lookahead_adamw", model, lr=1e-3, k=5, alpha=0.5)
    """
    key = name.lower().replace("-", "_")
    params = params_or_model.parameters() if isinstance(params_or_model, nn.Module) else params_or_model
    if key.startswith("lookahead_") and key.removeprefix("lookahead_") in _BASE:
        lookahead_kwargs = {k: kwargs.pop(k) for k in ("k", "alpha") if k in kwargs}
        return Lookahead(_BASE[key.removeprefix("lookahead_")](params, **kwargs), **lookahead_kwargs)
    if key not in _BASE:
        raise ValueError(f"Invalid optimizer name: {name!r} (choose one of: {', '.join(available_optimizers())})")
    return _BASE[key](params, **kwargs)

"""Gradient utilities: global-norm and value clipping, and finding non-finite gradients.

Clipping delegates to torch's own implementation (multi-tensor per device and dtype, DTensor-aware, no host
synchronisation), so results are torch's by construction; ravine adds the same call shape for any iterable of
parameters and a single place to import from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "nonfinite_grads"]


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale all gradients together so that their global ``norm_type`` norm is at most ``max_norm``.

    ``total = ‖(‖g₁‖, …, ‖gₙ‖)‖``; every gradient is multiplied by ``min(1, max_norm/(total + 1e-6))``
    without a branch, so nothing waits on the device. Returns the total norm (before clipping) as a tensor.
    """
    if not max_norm >= 0:
        raise ValueError(f"Invalid max_norm: {max_norm} (max_norm must be >= 0)")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return torch.nn.utils.clip_grad_norm_(
        params, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite, foreach=foreach
    )


def clip_grad_value_(
    parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient element into ``[−clip_value, clip_value]``, in place."""
    if not clip_value >= 0:
        raise ValueError(f"Invalid clip_value: {clip_value} (clip_value must be >= 0)")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    torch.nn.utils.clip_grad_value_(params, clip_value, foreach=foreach)


def nonfinite_grads(model: torch.nn.Module | Iterable[tuple[str, Tensor]]) -> dict[str, str]:
    """The parameters whose gradients hold NaN or Inf: ``{name: "NaN" | "Inf" | "NaN and Inf"}``.

    Accepts a module or ``named_parameters()``-style pairs. A debugging aid (it synchronises with the device
    once per parameter); the usual tutorial loop, with NaN and Inf labelled the right way round::

        for name, kind in ravine.grads.nonfinite_grads(model).items():
            print(f"{kind} in the gradient of {name}")
    """
    named: Any = model.named_parameters() if isinstance(model, torch.nn.Module) else model
    found: dict[str, str] = {}
    for name, p in named:
        grad = p.grad
        if grad is None:
            continue
        values = grad._values() if grad.is_sparse else grad
        has_nan, has_inf = bool(torch.isnan(values).any()), bool(torch.isinf(values).any())
        if has_nan or has_inf:
            found[name] = "NaN and Inf" if has_nan and has_inf else ("NaN" if has_nan else "Inf")
    return found

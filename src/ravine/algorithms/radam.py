"""RAdam, Adam with a rectified adaptive learning rate (Liu et al., 2020), as torch.optim.RAdam computes it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ravine.algorithms.building_blocks import apply_weight_decay, update_moments
from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_adam_family
from ravine.engine.views import Hyper, StateView


class RAdam(Optimizer):
    r"""RAdam; drop-in for :class:`torch.optim.RAdam`.

    Update (t the step, counted from 1)::

        g   ← g + λ·p                 (coupled)   |   p ← p·(1 − lr·λ)   (decoupled_weight_decay)
        m   ← lerp(m, g, 1 − β₁);   v ← β₂·v + (1 − β₂)·g²
        ρ∞  ← 2/(1 − β₂) − 1;       ρₜ ← ρ∞ − 2t·β₂ᵗ/(1 − β₂ᵗ)       length of the approximated SMA
        r   ← √((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ))          variance rectification
        p   ← p − lr · m/(1 − β₁ᵗ) · √(1 − β₂ᵗ)/(√v + ε) · r           if ρₜ > 5
        p   ← p − lr · m/(1 − β₁ᵗ)                                      otherwise (momentum SGD warm-up)

    Paper: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020. State: ``step``,
    ``exp_avg``, ``exp_avg_sq``.
    """

    nonnegative_state = ("exp_avg_sq",)

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        """Whether this step is rectified, and the rectification term: numbers of the step count alone."""
        beta2, step = hp.betas[1], hp.step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / (1 - beta2**step)
        if rho_t <= 5.0:
            return {"rectified": False, "rect": 1.0}
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        return {"rectified": True, "rect": rect}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        grad = apply_weight_decay(p, grad, hp, decoupled=hp.decoupled_weight_decay)
        update_moments(grad, state, beta1, beta2)
        step_ = state.exp_avg.div(1 - beta1**hp.step).mul_(hp.lr)
        if hp.rectified:
            adaptive = state.exp_avg_sq.sqrt().add_(hp.eps).reciprocal_().mul_((1 - beta2**hp.step) ** 0.5)
            step_.mul_(adaptive).mul_(hp.rect)
        p.add_(step_, alpha=-1.0)

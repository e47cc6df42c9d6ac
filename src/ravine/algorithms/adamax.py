"""Adamax, Adam's infinity-norm variant (Kingma & Ba, 2015, section 7.1), as torch.optim.Adamax computes it."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_adam_family
from ravine.engine.views import Hyper, StateView


class Adamax(Optimizer):
    r"""Adamax; drop-in for :class:`torch.optim.Adamax`.

    Update (t the step, counted from 1)::

        g  ← g + λ·p                         (if weight_decay)
        m  ← lerp(m, g, 1 − β₁)              first moment
        u  ← max(β₂·u, |g| + ε)              exponentially weighted infinity norm
        p  ← p − lr/(1 − β₁ᵗ) · m / u

    Paper: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (Algorithm 2). ε inside the
    maximum is torch's. State: ``step``, ``exp_avg``, ``exp_inf``.
    """

    nonnegative_state = ("exp_inf",)

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "exp_inf": torch.zeros_like(p)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        if hp.weight_decay != 0:
            grad = grad.add(p, alpha=hp.weight_decay)
        state.exp_avg.lerp_(grad, 1 - beta1)
        state.exp_inf.mul_(beta2).clamp_min_(grad.abs().add_(hp.eps))  # in-place elementwise maximum
        p.addcdiv_(state.exp_avg, state.exp_inf, value=-(hp.lr / (1 - beta1**hp.step)))

"""NAdam, Adam with Nesterov momentum (Dozat, 2016), as torch.optim.NAdam computes it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ravine.algorithms.building_blocks import apply_weight_decay, update_moments
from ravine.engine.optimizer import Optimizer, ParamsT, scalar_dtype
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_adam_family, check_non_negative
from ravine.engine.views import Hyper, StateView, value_of


class NAdam(Optimizer):
    r"""NAdam with momentum decay; drop-in for :class:`torch.optim.NAdam`.

    Update (t the step, ψ the momentum decay)::

        g    ← g + λ·p                 (coupled)   |   p ← p·(1 − lr·λ)   (decoupled_weight_decay: NAdamW)
        μₜ   ← β₁·(1 − ½·0.96^(t·ψ));   μₜ₊₁ likewise;   Πₜ ← Πₜ₋₁·μₜ      momentum schedule and its product
        m    ← lerp(m, g, 1 − β₁);      v ← β₂·v + (1 − β₂)·g²
        d    ← √(v / (1 − β₂ᵗ)) + ε
        p    ← p − lr·(1 − μₜ)/(1 − Πₜ) · g/d − lr·μₜ₊₁/(1 − Πₜ·μₜ₊₁) · m/d

    Paper: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop. State: ``step``,
    ``mu_product`` (a 0-d tensor per parameter, as in torch), ``exp_avg``, ``exp_avg_sq``.
    """

    nonnegative_state = ("exp_avg_sq",)

    step_counter = True
    scalar_state = ("mu_product",)

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        check_non_negative("momentum_decay", momentum_decay)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {
            "mu_product": torch.tensor(1.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p),
        }

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        """μₜ, μₜ₊₁ and the running product Πₜ (kept, as torch keeps it, in a 0-d tensor)."""
        beta1, decay, step = hp.betas[0], hp.momentum_decay, hp.step
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * decay)))
        state.mu_product.mul_(mu)
        return {"mu": mu, "mu_next": mu_next, "mu_product": value_of(state.mu_product)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        grad = apply_weight_decay(p, grad, hp, decoupled=hp.decoupled_weight_decay)
        update_moments(grad, state, beta1, beta2)
        denom = state.exp_avg_sq.div(1 - beta2**hp.step).sqrt().add_(hp.eps)
        mu_product_next = hp.mu_product * hp.mu_next
        p.addcdiv_(grad, denom, value=-hp.lr * (1.0 - hp.mu) / (1.0 - hp.mu_product))
        p.addcdiv_(state.exp_avg, denom, value=(-hp.lr * hp.mu_next) / (1.0 - mu_product_next))

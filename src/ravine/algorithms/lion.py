"""Lion, the evolved sign momentum optimizer (Chen et al., 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.modifiers import cautious
from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_betas, check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView


class Lion(Optimizer):
    r"""Lion; matches ``lion_pytorch.Lion`` (and google/automl's reference) step for step.

    Update::

        p ← p·(1 − lr·λ)                        decoupled weight decay, scaled by lr
        p ← p − lr·sign(β₁·m + (1 − β₁)·g)      the update is a sign: every coordinate moves by ±lr
        m ← β₂·m + (1 − β₂)·g

    Paper: Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023. It keeps one state
    tensor (``exp_avg``), half of AdamW's, and wants an lr 3–10× smaller and a weight decay 3–10× larger
    than AdamW. ``maximize`` negates the gradient first (torch's convention); complex parameters are
    treated as pairs of real coordinates. ``cautious=True`` masks the sign update where it disagrees with
    the gradient (:mod:`ravine.engine.modifiers`).
    """

    modifier_points = ("update",)

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
) -> None:
        check_lr(lr)
        check_betas(betas)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        if hp.weight_decay != 0:
            p.mul_(1 - hp.lr * hp.weight_decay)
        direction = state.exp_avg.mul(beta1).add_(grad, alpha=1 - beta1).sign_()
        if hp.cautious:
            direction = cautious(direction, grad)
        p.add_(direction, alpha=-hp.lr)
        state.exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)

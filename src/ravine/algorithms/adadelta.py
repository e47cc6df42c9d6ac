"""Adadelta (Zeiler, 2012), as torch.optim.Adadelta computes it."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr, check_non_negative, check_unit_interval
from ravine.engine.views import Hyper, StateView


class Adadelta(Optimizer):
    r"""Adadelta; drop-in for :class:`torch.optim.Adadelta`.

    Update (ρ the decay, λ weight decay)::

        g  ← g + λ·p                                   (if weight_decay)
        v  ← ρ·v + (1 − ρ)·g²                          square average of gradients
        Δ  ← √(u + ε) / √(v + ε) · g                   unit-corrected step
        u  ← ρ·u + (1 − ρ)·Δ²                          square average of steps
        p  ← p − lr·Δ

    Paper: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701 (2012). ``lr`` scales Δ
    (torch's extension; 1.0 is the paper). State: ``step``, ``square_avg``, ``acc_delta``.
    """

    nonnegative_state = ("square_avg", "acc_delta")

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
) -> None:
        check_lr(lr)
        check_unit_interval("rho", rho)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"square_avg": torch.zeros_like(p), "acc_delta": torch.zeros_like(p)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        rho = hp.rho
        if hp.weight_decay != 0:
            grad = grad.add(p, alpha=hp.weight_decay)
        state.square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        std = state.square_avg.add(hp.eps).sqrt_()
        delta = state.acc_delta.add(hp.eps).sqrt_().div_(std).mul_(grad)
        state.acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.add_(delta, alpha=-hp.lr)

"""Adagrad (Duchi et al., 2011), as torch.optim.Adagrad computes it."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView


class Adagrad(Optimizer):
    r"""Adagrad; drop-in for :class:`torch.optim.Adagrad`.

    Update (t the step, counted from 1)::

        g  ← g + λ·p                                (if weight_decay)
        η  ← lr / (1 + (t − 1)·lr_decay)
        s  ← s + g²                                 (s starts at initial_accumulator_value)
        p  ← p − η·g / (√s + ε)

    Paper: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
    Optimization", JMLR 2011. ε sits outside the square root and ``lr_decay`` is torch's extension.
    State (``step``, ``sum``) is created at construction, as in torch. Sparse gradients are supported
    (without weight decay).
    """

    nonnegative_state = ("sum",)

    step_counter = True
    eager_state = True
    supports_sparse = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
) -> None:
        check_lr(lr)
        check_non_negative("lr_decay", lr_decay)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("initial_accumulator_value", initial_accumulator_value)
        check_non_negative("eps", eps)
        defaults = dict(
            lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, foreach=foreach,
        )
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        value = hp.initial_accumulator_value
        return {"sum": torch.full_like(p, complex(value, value) if p.is_complex() else value)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        sparse = isinstance(grad, Tensor) and grad.is_sparse
        if hp.weight_decay != 0:
            if sparse:
                raise RuntimeError("weight_decay option is not compatible with sparse gradients")
            grad = grad.add(p, alpha=hp.weight_decay)
        clr = hp.lr / (1 + (hp.step - 1) * hp.lr_decay)
        if sparse:
            _sparse_update(p, grad, state.sum, clr, hp.eps)
            return
        state.sum.addcmul_(grad, grad, value=1)
        std = state.sum.sqrt().add_(hp.eps)
        p.addcdiv_(grad, std, value=-clr)


def _sparse_update(p: Tensor, grad: Tensor, state_sum: Tensor, clr: float, eps: float) -> None:
    """The same rule on the rows a sparse gradient touches (the update is non-linear: coalesce first)."""
    grad = grad.coalesce()
    indices, values = grad._indices(), grad._values()

    def sparse_like(v: Tensor) -> Tensor:
        return torch.sparse_coo_tensor(indices, v, grad.size())

    state_sum.add_(sparse_like(values.pow(2)))
    std_values = state_sum.sparse_mask(grad)._values().sqrt_().add_(eps)
    p.add_(sparse_like(values / std_values), alpha=-clr)

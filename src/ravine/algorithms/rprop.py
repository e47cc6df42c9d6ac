"""Rprop, resilient backpropagation (Riedmiller & Braun, 1993), as torch.optim.Rprop computes it."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr
from ravine.engine.views import Hyper, StateView


class Rprop(Optimizer):
    r"""Rprop; drop-in for :class:`torch.optim.Rprop`.

    Update (η₋ < 1 < η₊ the etas, s each coordinate's step size, starting at lr)::

        σ  ← sign(g · g_prev)
        s  ← clamp(s · (η₊ if σ > 0, η₋ if σ < 0, 1 if σ = 0), step_size_min, step_size_max)
        g  ← 0 where σ < 0                   (a sign change: skip this coordinate once)
        p  ← p − sign(g) · s
        g_prev ← g

    Paper: Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP
    Algorithm", ICNN 1993 (the Rprop⁻ variant without weight backtracking, as torch). Full-batch method.
    State: ``step``, ``prev``, ``step_size``.
    """

    nonnegative_state = ("step_size",)

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
) -> None:
        check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(
                f"Invalid eta values: {etas[0]}, {etas[1]} (etas must satisfy 0 < etaminus < 1 < etaplus)"
            )
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes)
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        # complex coordinates are pairs of real ones: the imaginary part gets its own nonzero step size
        size = complex(hp.lr, hp.lr) if p.is_complex() else hp.lr
        return {"prev": torch.zeros_like(p), "step_size": torch.full_like(p, size)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        etaminus, etaplus = hp.etas
        step_size_min, step_size_max = hp.step_sizes
        sign = grad.mul(state.prev).sign_()
        rising, falling = sign.gt(0), sign.lt(0)
        factor = sign.masked_fill_(rising, etaplus).masked_fill_(falling, etaminus).masked_fill_(sign.eq(0), 1)
        state.step_size.mul_(factor).clamp_(step_size_min, step_size_max)
        grad = grad.masked_fill(falling, 0)
        p.addcmul_(grad.sign(), state.step_size, value=-1)
        state.prev.copy_(grad)

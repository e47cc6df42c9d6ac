"""Averaged SGD (Polyak & Juditsky, 1992), as torch.optim.ASGD computes it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT, scalar_dtype
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView, value_of


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent; drop-in for :class:`torch.optim.ASGD`.

    Update (t the step, η its step size, μ its averaging rate)::

        g   ← g + λ_wd·p                          (if weight_decay)
        p   ← p·(1 − λ·η) − η·g                   decayed SGD step
        ax  ← ax + μ·(p − ax)     (ax ← p while μ = 1)   running average of the iterates
        η   ← lr / (1 + λ·lr·t)^α                  for the next step
        μ   ← 1 / max(1, t − t₀)                   averaging starts after t₀ steps

    Paper: Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J. Control Optim.
    30(4), 1992; step sizes as in Bottou, "Large-Scale Machine Learning with Stochastic Gradient Descent" (2010).
    The averaged parameters are ``state["ax"]``; η and μ are per-parameter 0-d tensors (``eta``, ``mu``) on the
    parameter's device, as in torch.
    """

    precise_state = ("ax",)  # the averaged parameters: never stored compactly

    step_counter = True
    step_on_param_device = True
    scalar_state = ("eta", "mu")

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
) -> None:
        check_lr(lr)
        check_non_negative("weight_decay", weight_decay)
        defaults = dict(
            lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach, maximize=maximize,
        )
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {
            "eta": torch.as_tensor(hp.lr, device=p.device, dtype=scalar_dtype()).clone(),
            "mu": torch.ones((), device=p.device, dtype=scalar_dtype()),
            "ax": torch.zeros_like(p),
        }

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        """This step's η and μ (as stored), then the next step's written into the state."""
        eta, mu = value_of(state.eta), value_of(state.mu)
        step, lr = hp.step, hp.lr
        # rounded through a default-dtype tensor on the way in, as torch stores them
        state.eta.fill_(torch.as_tensor(lr / ((1 + hp.lambd * lr * step) ** hp.alpha)).item())
        state.mu.fill_(torch.as_tensor(1 / max(1, step - hp.t0)).item())
        return {"eta": eta, "mu": mu}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        if hp.weight_decay != 0:
            grad = grad.add(p, alpha=hp.weight_decay)
        p.mul_(1 - hp.lambd * hp.eta)
        p.add_(grad, alpha=-hp.eta)
        if hp.mu != 1:
            state.ax.add_(p.sub(state.ax).mul_(hp.mu))
        else:
            state.ax.copy_(p)

"""RMSprop (Hinton, Coursera lecture 6e), as torch.optim.RMSprop computes it, plus optional bias correction."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView


class RMSprop(Optimizer):
    r"""RMSprop with optional centering, momentum and bias correction; drop-in for :class:`torch.optim.RMSprop`.

    Update (α the smoothing constant, t the step)::

        g  ← g + λ·p                                  (if weight_decay)
        S  ← α·S + (1 − α)·g²
        Ŝ  ← S / (1 − αᵗ)    if bias_correction  else S
        ḡ  ← lerp(ḡ, g, 1 − α)                        (if centered)
        d  ← √(Ŝ − ḡ²) + ε   if centered  else  √Ŝ + ε
        b  ← μ·b + g/d;  p ← p − lr·b                 (if momentum)
        p  ← p − lr·g/d                               (otherwise)

    Source: Tieleman & Hinton, "Lecture 6.5 — RMSprop", COURSERA: Neural Networks for Machine Learning (2012);
    centered form from Graves, "Generating Sequences With Recurrent Neural Networks" (2013). ε is outside the
    square root and lr outside the momentum buffer, as in torch. ``bias_correction=True`` divides the square
    average by ``1 − αᵗ`` (the bias-corrected form some tutorials teach, as Adam does for its second moment).
    Only S is corrected: correcting ḡ too would make the centered variance exactly zero on the first step
    (Ŝ = ĝ² = g²) and the step g/ε explode. With the default ``False`` the result is bit-identical to torch.
    State: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """

    nonnegative_state = ("square_avg",)

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        bias_correction: bool = False,
    ) -> None:
        check_lr(lr)
        check_non_negative("eps", eps)
        check_non_negative("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("alpha", alpha)
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
            bias_correction=bias_correction,
        )
        super().__init__(params, defaults)

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        state = {"square_avg": torch.zeros_like(p)}
        if hp.momentum > 0:
            state["momentum_buffer"] = torch.zeros_like(p)
        if hp.centered:
            state["grad_avg"] = torch.zeros_like(p)
        return state

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        alpha = hp.alpha
        if hp.weight_decay != 0:
            grad = grad.add(p, alpha=hp.weight_decay)
        square_avg = state.square_avg
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        correction = 1 - alpha**hp.step if hp.bias_correction else 1.0
        if hp.centered:
            grad_avg = state.grad_avg
            grad_avg.lerp_(grad, 1 - alpha)
            corrected = square_avg.div(correction) if hp.bias_correction else square_avg
            avg = corrected.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.div(correction).sqrt_() if hp.bias_correction else square_avg.sqrt()
        avg = avg.add_(hp.eps)
        if hp.momentum > 0:
            buf = state.momentum_buffer
            buf.mul_(hp.momentum).addcdiv_(grad, avg)
            p.add_(buf, alpha=-hp.lr)
        else:
            p.addcdiv_(grad, avg, value=-hp.lr)

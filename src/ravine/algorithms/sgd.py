"""Stochastic gradient descent with momentum, dampening and Nesterov momentum (torch.optim.SGD)."""

from __future__ import annotations

from torch import Tensor

from ravine.engine.modifiers import cautious
from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView


class SGD(Optimizer):
    r"""SGD with momentum, dampening and Nesterov momentum; drop-in for :class:`torch.optim.SGD`.

    Update (g the gradient, μ momentum, τ dampening, λ weight decay)::

        g ← g + λ·p                         (if weight_decay)
        b ← g                               (first step)
        b ← μ·b + (1 − τ)·g                 (later steps)
        d ← g + μ·b  if nesterov  else  b   (if momentum)
        p ← p − lr·d

    With ``momentum=β, dampening=β`` the buffer is the exponentially weighted average of the gradients,
    ``b ← β·b + (1 − β)·g`` (the "momentum as EWA" form). Nesterov is Sutskever et al. (2013) in torch's
    look-ahead form. Defaults and state (``momentum_buffer``, only when ``momentum != 0``) match torch.
    ``cautious=True`` masks the step where it disagrees with the gradient (:mod:`ravine.engine.modifiers`;
    dense gradients only).
    """

    supports_sparse = True
    modifier_points = ("update",)

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
) -> None:
        check_lr(lr)
        check_non_negative("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got nesterov=True, momentum={momentum}, dampening={dampening})"
            )
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def creates_state_in_update(self, hp: Hyper) -> bool:
        return hp.momentum != 0  # the buffer starts as a copy of the first gradient

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        if hp.cautious and getattr(grad, "is_sparse", False):
            raise RuntimeError("SGD(cautious=True) does not support sparse gradients")
        if hp.weight_decay != 0:
            grad = grad.add(p, alpha=hp.weight_decay)
        if hp.momentum != 0:
            buf = state.momentum_buffer
            if buf is None:
                buf = state.momentum_buffer = grad.clone()
            else:
                buf.mul_(hp.momentum).add_(grad, alpha=1 - hp.dampening)
            direction = grad.add(buf, alpha=hp.momentum) if hp.nesterov else buf
            if hp.cautious:
                direction = cautious(direction.clone(), grad)  # the buffer itself stays unmasked
            grad = direction
        p.add_(grad, alpha=-hp.lr)

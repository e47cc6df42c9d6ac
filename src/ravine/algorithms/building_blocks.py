"""Steps several algorithms share, written once: weight decay in its two forms and Adam's moment estimates.

They take whatever the update receives (a tensor, a TensorList, a fused stand-in) and issue the same tensor
operations in the same order as torch's implementations, so the algorithms built from them stay bit-identical.
"""

from __future__ import annotations

from ravine.engine.tensorlist import Maths
from ravine.engine.views import Hyper, StateView


def apply_weight_decay(p: Maths, grad: Maths, hp: Hyper, *, decoupled: bool) -> Maths:
    """λ = ``hp.weight_decay``: decoupled shrinks the parameter, ``p ← p·(1 − lr·λ)`` (Loshchilov & Hutter,
    2019); coupled (L2) adds ``λ·p`` to the gradient. Returns the gradient to use."""
    if hp.weight_decay == 0:
        return grad
    if decoupled:
        p.mul_(1 - hp.lr * hp.weight_decay)
        return grad
    return grad.add(p, alpha=hp.weight_decay)


def update_moments(grad: Maths, state: StateView, beta1: float, beta2: float) -> None:
    """Adam's estimates (Kingma & Ba, 2015): ``m ← lerp(m, g, 1 − β₁)``, ``v ← β₂·v + (1 − β₂)·g²``."""
    state.exp_avg.lerp_(grad, 1 - beta1)
    state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

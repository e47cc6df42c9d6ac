"""ADOPT, adaptive gradient method with the optimal convergence rate (Taniguchi et al., 2024)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_adam_family
from ravine.engine.views import Hyper, StateView


def quarter_power(step: float) -> float:
    """ADOPT's default clipping bound, ``step ** 0.25``."""
    return step**0.25


class ADOPT(Optimizer):
    r"""ADOPT; matches the official package (``torch-adopt``, ``adopt.ADOPT``, clipped form of commit ed31335+).

    Update (s the number of previous steps, 0 on the first call)::

        g ← g + λ·p                                  (weight_decay, coupled; also enters v₀)
        s = 0:  v ← g²  and stop                     the first call only seeds v (no parameter change)
        p ← p − lr·λ·p                               (decouple=True: decoupled weight decay)
        n ← g / max(√v, ε)                           normalise by the *previous* second moment
        n ← clamp(n, −c, c),  c = clip_lambda(s)     (skipped when clip_lambda is None)
        m ← lerp(m, n, 1 − β₁)
        p ← p − lr·m
        v ← β₂·v + (1 − β₂)·g²                       updated after the parameter

    Paper: Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal Rate",
    NeurIPS 2024. ``clip_lambda`` is kept on the optimizer, out of ``param_groups`` and state, so state dicts
    stay picklable and load with ``torch.load(weights_only=True)``. State: ``step``, ``exp_avg``,
    ``exp_avg_sq``.
    """

    nonnegative_state = ("exp_avg_sq",)

    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.9999),
        eps: float = 1e-6,
        clip_lambda: Callable[[float], float] | None = quarter_power,
        weight_decay: float = 0.0,
        decouple: bool = False,
) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        if clip_lambda is not None and not callable(clip_lambda):
            raise ValueError(f"Invalid clip_lambda: {clip_lambda!r} (clip_lambda must be callable or None)")
        self.clip_lambda = clip_lambda
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decouple=decouple)
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "clip_lambda": self.clip_lambda}

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        if hp.weight_decay != 0 and not hp.decouple:
            grad = grad.add(p, alpha=hp.weight_decay)
        if hp.step == 1:
            state.exp_avg_sq.addcmul_(grad, grad)
            return
        if hp.weight_decay != 0 and hp.decouple:
            p.add_(p, alpha=-hp.lr * hp.weight_decay)
        normed_grad = grad.div(state.exp_avg_sq.sqrt().clamp_min_(hp.eps))
        if self.clip_lambda is not None:
            bound = self.clip_lambda(hp.step - 1)
            normed_grad.clamp_(-bound, bound)
        state.exp_avg.lerp_(normed_grad, 1 - beta1)
        p.add_(state.exp_avg, alpha=-hp.lr)
        state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

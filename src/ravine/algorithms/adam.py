"""Adam (Kingma & Ba, 2015), AMSGrad (Reddi et al., 2018) and AdamW (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from collections import ChainMap
from typing import Any

import torch
from torch import Tensor

from ravine.algorithms.building_blocks import apply_weight_decay, update_moments
from ravine.engine.modifiers import ademamix_active, ademamix_scalars, cautious, mix_slow_momentum
from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import (
    check_adam_family,
    check_non_negative,
    check_tensor_hyperparameters_without_foreach,
)
from ravine.engine.views import Hyper, StateView


class Adam(Optimizer):
    r"""Adam with AMSGrad and ``eps_root``; drop-in for :class:`torch.optim.Adam`.

    Update (t the step, counted from 1)::

        g  ← g + λ·p                    (weight_decay, coupled L2)   |  p ← p·(1 − lr·λ)  (decoupled: AdamW)
        m  ← lerp(m, g, 1 − β₁)                                       first moment
        v  ← β₂·v + (1 − β₂)·g²                                       second moment
        v̂max ← max(v̂max, v)                                           (amsgrad: max of the raw v, as torch)
        d  ← √v / √(1 − β₂ᵗ) + ε                 if eps_root == 0     (torch's order of operations)
        d  ← √(v / (1 − β₂ᵗ) + ε_root) + ε       otherwise            (optax's ε inside the square root)
        p  ← p − lr/(1 − β₁ᵗ) · m / d

    Papers: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015; Reddi, Kale & Kumar,
    "On the Convergence of Adam and Beyond", ICLR 2018 (AMSGrad). Defaults match torch; state keys are
    ``step``, ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq`` (amsgrad).
    """

    nonnegative_state = ("exp_avg_sq", "max_exp_avg_sq")

    step_counter = True
    modifier_points = ("update", "momentum")

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        eps_root: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        check_non_negative("eps_root", eps_root)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, eps_root=eps_root,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def check_group(self, group: ChainMap[str, Any], *, at_step: bool) -> None:
        """torch's rules: betas both floats or both tensors; no tensor lr or beta on the foreach path
        (torch's ``capturable=False``, which is all ravine has): ValueError when built, RuntimeError at a step."""
        betas = group["betas"]
        same_kind = all(isinstance(b, float) for b in betas) or all(torch.is_tensor(b) for b in betas)
        if not at_step and not same_kind:
            raise ValueError(f"betas must be either both floats or both Tensors (got {betas!r})")
        try:
            check_tensor_hyperparameters_without_foreach(type(self).__name__, group["foreach"], group["lr"],
                                                         None if at_step else betas)
        except ValueError as error:
            if at_step:
                raise RuntimeError(str(error)) from None
            raise

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        state = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        if hp.amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        if ademamix_active(hp):
            state["exp_avg_slow"] = torch.zeros_like(p)
        return state

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        return ademamix_scalars(hp, hp.betas[0]) if ademamix_active(hp) else {}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        grad = apply_weight_decay(p, grad, hp, decoupled=hp.decoupled_weight_decay)
        update_moments(grad, state, beta1, beta2)
        bias_correction1 = 1 - beta1**hp.step
        bias_correction2 = 1 - beta2**hp.step
        second_moment = state.exp_avg_sq
        if hp.amsgrad:
            second_moment = state.max_exp_avg_sq.clamp_min_(second_moment)  # running elementwise maximum
        if hp.eps_root == 0:
            denom = second_moment.sqrt().div_(bias_correction2**0.5).add_(hp.eps)
        else:
            denom = second_moment.div(bias_correction2).add_(hp.eps_root).sqrt_().add_(hp.eps)
        if not hp.cautious and not ademamix_active(hp):
            p.addcdiv_(state.exp_avg, denom, value=-(hp.lr / bias_correction1))
            return
        # with modifiers: u = (m̂₁ [+ α·m₂]) / d, [masked where it disagrees with g], p ← p − lr·u
        direction = state.exp_avg.div(bias_correction1)
        if ademamix_active(hp):
            direction = mix_slow_momentum(direction, grad, state, hp)
        direction = direction.div_(denom)
        if hp.cautious:
            direction = cautious(direction, grad)
        p.add_(direction, alpha=-hp.lr)


class AdamW(Adam):
    r"""Adam with decoupled weight decay; drop-in for :class:`torch.optim.AdamW`.

    Identical to :class:`Adam` except that weight decay shrinks the parameters directly,
    ``p ← p·(1 − lr·λ)``, before the moment updates, instead of adding ``λ·p`` to the gradient, and that
    ``weight_decay`` defaults to ``1e-2``.

    Paper: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        eps_root: float = 0.0,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, eps_root=eps_root,
                         decoupled_weight_decay=True)

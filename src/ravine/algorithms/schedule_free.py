"""Schedule-Free SGD, AdamW and RAdam (Defazio et al., 2024): no learning-rate schedule, an average instead."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_betas, check_lr, check_non_negative, check_numbers
from ravine.engine.views import Hyper, StateView

# Counters the reference keeps in each parameter group (and so in the state dict), with their start values
# (train_mode starts True here: see ScheduleFree).
GROUP_COUNTERS: dict[str, Any] = {"k": 0, "train_mode": True, "weight_sum": 0.0, "lr_max": -1.0,
                                  "scheduled_lr": 0.0}


class ScheduleFree(Optimizer):
    r"""What Schedule-Free SGD and AdamW share: the averaging weights, and the train/eval swap.

    Three sequences: z (the base optimizer's iterate, ``state["z"]``), x (the weighted average of the z's: the
    weights to evaluate and ship) and y = (1 − β)·z + β·x, where gradients are taken. Only y (in the
    parameters, train mode) and z are stored; x is recovered from them::

        cₜ = wₜ / Σᵢ wᵢ,   wₜ = tʳ · lr_maxᵖ           (p = ``weight_lr_power``, r = ``r``)
        y ← lerp(y, z, cₜ);   y ← y + lr·(β·(1 − cₜ) − 1)·u;   z ← z − lr·u      (u: the base update)

    ``optimizer.eval()`` moves the parameters from y to x, ``optimizer.train()`` back; ``step()`` in eval
    mode is an error. Both modes and the counters (``k``, ``weight_sum``, ``lr_max``, ``train_mode``,
    ``scheduled_lr``) live in the parameter groups, as in the reference, so the state dict records the mode
    and a checkpoint taken in either one resumes bit for bit.

    **What to evaluate and save.** Call ``optimizer.eval()`` before evaluating, before saving the model's
    weights for use elsewhere, and before ``torch.save``-ing a checkpoint whose weights should be x; call
    ``optimizer.train()`` before the next training step. A new optimizer starts in train mode (the reference
    starts in eval mode and refuses to step until ``train()`` is called; with no average yet the two modes
    hold the same weights, so calling ``train()`` first, as the reference's users do, changes nothing).
    **BatchNorm**: running statistics were
    gathered at y, not x; before evaluating, recompute them at x with a few training-mode forward passes
    (``model.train()`` with ``torch.no_grad()``, after ``optimizer.eval()``), as the authors recommend.
    Under ZeroRedundancyOptimizer each rank swaps only the parameters it owns: broadcast afterwards (or swap
    on a single-process copy) before evaluating.

    Paper: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS 2024
    (winner of AlgoPerf's self-tuning track). Reference: facebookresearch/schedule_free (``schedulefree``).
    """

    nonnegative_state = ("exp_avg_sq",)
    precise_state = ("z",)  # an iterate, not a statistic: never stored compactly

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        super().__init__(params, {**defaults, **GROUP_COUNTERS})

    def averaging_momentum(self, group: dict[str, Any]) -> float:
        """β, the interpolation between z and x where gradients are taken."""
        raise NotImplementedError

    def lr_multiplier(self, group: dict[str, Any], k: int) -> float:
        """The lr multiplier of step k (counted from 0): linear warmup over ``warmup_steps``."""
        warmup_steps = group["warmup_steps"]
        return (k + 1) / warmup_steps if k < warmup_steps else 1.0

    def group_scalars(self, group: dict[str, Any]) -> dict[str, Any]:
        """This step's lr and averaging weight cₜ, with the group's counters advanced (as the reference)."""
        if not group["train_mode"]:
            raise RuntimeError(
                f"{type(self).__name__}.step() called in eval mode: call optimizer.train() before training "
                "steps (and optimizer.eval() before evaluating or saving the weights to use)"
            )
        k = group["k"]
        lr = group["lr"] * self.lr_multiplier(group, k)
        group["scheduled_lr"] = lr
        lr_max = group["lr_max"] = max(lr, group["lr_max"])
        weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
        weight_sum = group["weight_sum"] = group["weight_sum"] + weight
        try:
            ckp1 = weight / weight_sum
        except ZeroDivisionError:
            ckp1 = 0
        group["k"] = k + 1
        return {"sf_lr": lr, "ckp1": ckp1, "sf_step": k + 1}

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"z": torch.clone(p, memory_format=torch.preserve_format)}

    def _average_step(self, p: Maths, direction: Maths, state: StateView, hp: Hyper, beta: float) -> None:
        """y ← lerp(y, z, cₜ) + lr·(β·(1 − cₜ) − 1)·u (with weight decay at y in u);  z ← z − lr·u."""
        if hp.weight_decay != 0:
            direction = direction.add(p, alpha=hp.weight_decay)
        p.lerp_(state.z, hp.ckp1)
        p.add_(direction, alpha=hp.sf_lr * (beta * (1 - hp.ckp1) - 1))
        state.z.sub_(direction, alpha=hp.sf_lr)

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to y, where gradients are taken (no-op when already in train mode)."""
        self._swap(to_train=True)

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to x, the average to evaluate and save (no-op when already in eval mode)."""
        self._swap(to_train=False)

    def _swap(self, *, to_train: bool) -> None:
        for group in self.param_groups:
            if bool(group["train_mode"]) == to_train:
                continue
            beta = self.averaging_momentum(self.options(group))
            weight = 1 - beta if to_train else 1 - 1 / beta
            for p in group["params"]:
                state = self.state.get(p)
                if state and "z" in state:
                    p.lerp_(state["z"].to(device=p.device, dtype=p.dtype), weight)
            group["train_mode"] = to_train


class ScheduleFreeSGD(ScheduleFree):
    r"""Schedule-Free SGD; matches ``schedulefree.SGDScheduleFree`` step for step.

    The base update is the gradient, with L2 weight decay taken at y: ``u = g + λ·y``; the rest is
    :class:`ScheduleFree`'s averaging with β = ``momentum``. Defaults follow the reference (``lr=1.0``,
    ``momentum=0.9``); no schedule is needed, only ``warmup_steps``. State: ``z``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        check_numbers(momentum=momentum, warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power)
        check_lr(lr)
        check_non_negative("weight_decay", weight_decay)
        if not 0 < momentum < 1:
            raise ValueError(f"Momentum must be between 0 and 1 exclusive: {momentum}")
        check_non_negative("warmup_steps", warmup_steps)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                        weight_lr_power=weight_lr_power)
        super().__init__(params, defaults)

    def averaging_momentum(self, group: dict[str, Any]) -> float:
        return group["momentum"]

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        self._average_step(p, grad, state, hp, hp.momentum)


def _adam_defaults(lr: float | Tensor, betas: tuple[float, float], eps: float, weight_decay: float, r: float,
                   weight_lr_power: float) -> dict[str, Any]:
    """The checked options Schedule-Free AdamW and RAdam share."""
    check_numbers(eps=eps, r=r, weight_lr_power=weight_lr_power)
    check_lr(lr)
    check_betas(betas)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    return dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, r=r, weight_lr_power=weight_lr_power)


class ScheduleFreeAdamW(ScheduleFree):
    r"""Schedule-Free AdamW; matches ``schedulefree.AdamWScheduleFree`` step for step.

    The base update is Adam's normalised gradient without a first moment (the averaging supplies it), with
    weight decay taken at y::

        v ← β₂·v + (1 − β₂)·g²;   u = g / (√(v / (1 − β₂ᵗ)) + ε) + λ·y

    then :class:`ScheduleFree`'s averaging with β = β₁. Defaults follow the reference (``lr=0.0025``,
    ``betas=(0.9, 0.999)``, ``eps=1e-8``). State: ``z``, ``exp_avg_sq`` — one tensor fewer than AdamW's
    moments plus an average would take.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        check_numbers(warmup_steps=warmup_steps)
        check_non_negative("warmup_steps", warmup_steps)
        defaults = _adam_defaults(lr, betas, eps, weight_decay, r, weight_lr_power)
        super().__init__(params, {**defaults, "warmup_steps": warmup_steps})

    def averaging_momentum(self, group: dict[str, Any]) -> float:
        return group["betas"][0]

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {**super().init_state(p, hp), "exp_avg_sq": torch.zeros_like(p)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = state.exp_avg_sq.div(1 - beta2**hp.sf_step).sqrt_().add_(hp.eps)
        self._average_step(p, grad.div(denom), state, hp, beta1)


class ScheduleFreeRAdam(ScheduleFreeAdamW):
    r"""Schedule-Free RAdam; matches ``schedulefree.RAdamScheduleFree`` step for step.

    Schedule-Free AdamW with RAdam's rectification (Liu et al., "On the Variance of the Adaptive Learning Rate
    and Beyond", ICLR 2020) in place of a warmup: with ρ∞ = 2/(1 − β₂) − 1 and
    ρₜ = ρ∞ − 2t·β₂ᵗ/(1 − β₂ᵗ), the step's lr is ``lr·√((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ))`` and the
    update Adam's normalised gradient once ρₜ > 4. Before that (the first 4 steps with β₂ = 0.999) the
    update is the raw gradient at the full lr, or, with ``silent_sgd_phase=True`` (the default, as the
    reference recommends), nothing but the second moment moves. No ``warmup_steps``. State: ``z``,
    ``exp_avg_sq``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        silent_sgd_phase: bool = True,
    ) -> None:
        defaults = _adam_defaults(lr, betas, eps, weight_decay, r, weight_lr_power)
        ScheduleFree.__init__(self, params, {**defaults, "silent_sgd_phase": bool(silent_sgd_phase)})

    @staticmethod
    def _rho(group: dict[str, Any], step: int) -> float:
        """ρₜ, the length of the approximated simple moving average at ``step`` (counted from 1)."""
        beta2 = group["betas"][1]
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        return rho_inf - 2 * step * beta2_t / (1 - beta2_t)

    def lr_multiplier(self, group: dict[str, Any], k: int) -> float:
        """RAdam's rectification of step k + 1 (0, or 1 without the silent phase, while ρₜ ≤ 4)."""
        rho_t = self._rho(group, k + 1)
        if rho_t <= 4.0:
            return float(not group["silent_sgd_phase"])
        rho_inf = 2 / (1 - group["betas"][1]) - 1
        return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

    def group_scalars(self, group: dict[str, Any]) -> dict[str, Any]:
        adaptive = self._rho(group, group["k"] + 1) > 4.0
        return {**super().group_scalars(group), "sf_adaptive": adaptive}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if hp.sf_adaptive:
            denom = state.exp_avg_sq.div(1 - beta2**hp.sf_step).sqrt_().add_(hp.eps)
            grad = grad.div(denom)
        self._average_step(p, grad, state, hp, beta1)

"""Learning-rate schedules: pure functions of the step, and an adapter that is a torch ``LRScheduler``.

Every schedule constructor takes the peak learning rate first and returns a :class:`Schedule`, a pure
``step -> lr`` function (steps count from 0) that can be plotted, joined and tested against its closed form::

    s = warmup_cosine_decay(3e-4, warmup_steps=1000, total_steps=10_000, min_lr=1e-5)
    s(0), s(1000), s(10_000)          # 0.0, 3e-4, 1e-5

To drive an optimizer, :class:`ScheduleLR` builds one schedule per parameter group from that group's own base
lr, and is a real :class:`torch.optim.lr_scheduler.LRScheduler` (``state_dict``, ``get_last_lr``, tensor lrs
updated in place with ``fill_`` so compiled steps never recompile)::

    scheduler = ravine.schedules.warmup_cosine(optimizer, warmup_steps=1000, total_steps=10_000)
    scheduler = ravine.schedules.ScheduleLR(optimizer, ravine.schedules.step_decay, step_size=30, gamma=0.1)

For reduce-on-plateau, torch's :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` works with every ravine
optimizer as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "SCHEDULES",
    "Schedule",
    "ScheduleLR",
    "constant",
    "cosine_decay",
    "cosine_restarts",
    "exponential",
    "inverse_time",
    "join",
    "linear_warmup",
    "polynomial",
    "step_decay",
    "warmup_cosine",
    "warmup_cosine_decay",
]


class Schedule:
    """A pure function ``step -> lr`` with a readable description (``repr``) of how it was built."""

    def __init__(self, name: str, fn: Callable[[int], float], **params: Any) -> None:
        self.name, self._fn, self.params = name, fn, params

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"Invalid step: {step} (step must be >= 0)")
        return float(self._fn(step))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


# ---- validation -----------------------------------------------------------------------------------
def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"Invalid {name}: {value} ({name} must be >= 0)")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"Invalid {name}: {value} ({name} must be > 0)")


def _floor_below_peak(lr: float, min_lr: float, *, floor_name: str = "min_lr") -> None:
    _non_negative("lr", lr)
    _non_negative(floor_name, min_lr)
    if min_lr > lr:
        raise ValueError(f"Invalid {floor_name}: {min_lr} ({floor_name} must be <= lr={lr})")


def _half_cosine(progress: float) -> float:
    """0.5·(1 + cos(π·progress)), progress clamped to [0, 1]: from 1 down to 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


# ---- schedules ------------------------------------------------------------------------------------
def constant(lr: float) -> Schedule:
    """lr at every step."""
    _non_negative("lr", lr)
    return Schedule("constant", lambda step: lr, lr=lr)


def linear_warmup(lr: float, warmup_steps: int, start_lr: float = 0.0) -> Schedule:
    """From ``start_lr`` at step 0 linearly to ``lr`` at ``warmup_steps``, then constant."""
    _non_negative("warmup_steps", warmup_steps)
    _floor_below_peak(lr, start_lr, floor_name="start_lr")

    def fn(step: int) -> float:
        if step >= warmup_steps:
            return lr
        return start_lr + (lr - start_lr) * step / warmup_steps

    return Schedule("linear_warmup", fn, lr=lr, warmup_steps=warmup_steps, start_lr=start_lr)


def cosine_decay(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """``min_lr + (lr − min_lr)·0.5·(1 + cos(π·step/total_steps))``, then ``min_lr``.

    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """
    _positive("total_steps", total_steps)
    _floor_below_peak(lr, min_lr)
    return Schedule(
        "cosine_decay", lambda step: min_lr + (lr - min_lr) * _half_cosine(step / total_steps),
        lr=lr, total_steps=total_steps, min_lr=min_lr,
    )


def warmup_cosine_decay(lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """Linear warmup then cosine decay — the common transformer schedule, with a floor.

    ``lr·step/warmup_steps`` while ``step < warmup_steps``; then, with
    ``progress = (step − warmup_steps)/(total_steps − warmup_steps)``,
    ``min_lr + (lr − min_lr)·0.5·(1 + cos(π·progress))``, and ``min_lr`` after ``total_steps``.
    With ``min_lr=0`` this is exactly the usual warmup-cosine ``LambdaLR`` multiplier times ``lr``.
    """
    _non_negative("warmup_steps", warmup_steps)
    _positive("total_steps", total_steps)
    if warmup_steps > total_steps:
        raise ValueError(
            f"Invalid warmup_steps: {warmup_steps} (warmup_steps must be <= total_steps={total_steps})"
        )
    _floor_below_peak(lr, min_lr)

    def fn(step: int) -> float:
        if step < warmup_steps:
            return lr * (float(step) / float(max(1, warmup_steps)))
        progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
        return min_lr + (lr - min_lr) * _half_cosine(progress)

    return Schedule(
        "warmup_cosine_decay", fn, lr=lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr=min_lr
    )


def cosine_restarts(lr: float, period: int, period_mult: float = 1.0, min_lr: float = 0.0) -> Schedule:
    """Cosine decay that restarts at ``lr`` after each period; periods grow by ``period_mult`` (SGDR).

    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017; torch's
    ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=min_lr)``.
    """
    _positive("period", period)
    if not period_mult >= 1:
        raise ValueError(f"Invalid period_mult: {period_mult} (period_mult must be >= 1)")
    _floor_below_peak(lr, min_lr)

    def fn(step: int) -> float:
        position, length = float(step), float(period)
        while position >= length:
            position -= length
            length *= period_mult
        return min_lr + (lr - min_lr) * _half_cosine(position / length)

    return Schedule("cosine_restarts", fn, lr=lr, period=period, period_mult=period_mult, min_lr=min_lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``lr·gamma^⌊step/step_size⌋`` (torch's ``StepLR``)."""
    _non_negative("lr", lr)
    _positive("step_size", step_size)
    _positive("gamma", gamma)
    return Schedule(
        "step_decay", lambda step: lr * gamma ** (step // step_size), lr=lr, step_size=step_size, gamma=gamma
    )


def exponential(lr: float, gamma: float) -> Schedule:
    """``lr·gamma^step`` (torch's ``ExponentialLR``)."""
    _non_negative("lr", lr)
    _positive("gamma", gamma)
    return Schedule("exponential", lambda step: lr * gamma**step, lr=lr, gamma=gamma)


def inverse_time(lr: float, rate: float, interval: int | None = None) -> Schedule:
    """``lr/(1 + rate·step)``; with ``interval``, the staircase form ``lr/(1 + rate·⌊step/interval⌋)``.

    The textbook learning-rate decay ``α/(1 + decay_rate·epoch_num)`` and its scheduled variant.
    """
    _non_negative("lr", lr)
    _non_negative("rate", rate)
    if interval is not None:
        _positive("interval", interval)

    def fn(step: int) -> float:
        return lr / (1.0 + rate * (step if interval is None else step // interval))

    return Schedule("inverse_time", fn, lr=lr, rate=rate, interval=interval)


def polynomial(lr: float, total_steps: int, power: float = 1.0, end_lr: float = 0.0) -> Schedule:
    """``(lr − end_lr)·(1 − step/total_steps)^power + end_lr``, then ``end_lr``."""
    _positive("total_steps", total_steps)
    _positive("power", power)
    _floor_below_peak(lr, end_lr, floor_name="end_lr")

    def fn(step: int) -> float:
        return (lr - end_lr) * (1.0 - min(step, total_steps) / total_steps) ** power + end_lr

    return Schedule("polynomial", fn, lr=lr, total_steps=total_steps, power=power, end_lr=end_lr)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` (from its own step 0), and so on."""
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"Invalid boundaries: {list(boundaries)} (need len(schedules) - 1 = {len(schedules) - 1} boundaries)"
        )
    if any(b <= 0 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
        raise ValueError(f"Invalid boundaries: {list(boundaries)} (boundaries must be positive and increasing)")

    def fn(step: int) -> float:
        start = 0
        for schedule, boundary in zip(schedules, boundaries, strict=False):
            if step < boundary:
                return schedule(step - start)
            start = boundary
        return schedules[-1](step - start)

    return Schedule("join", fn, schedules=list(schedules), boundaries=list(boundaries))


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "linear_warmup": linear_warmup,
    "cosine_decay": cosine_decay,
    "warmup_cosine": warmup_cosine_decay,
    "cosine_restarts": cosine_restarts,
    "step_decay": step_decay,
    "exponential": exponential,
    "inverse_time": inverse_time,
    "polynomial": polynomial,
}
"""Schedules by name, as ``ravine schedule plot NAME`` knows them."""


# ---- the torch adapter ----------------------------------------------------------------------------
class ScheduleLR(LRScheduler):
    """A torch ``LRScheduler`` that sets each group's lr to ``schedule(base_lr, **params)(step)``.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (ravine's or torch's), with any number of groups.
        schedule: a schedule constructor taking the peak lr first (e.g. :func:`cosine_decay`), or any
            callable ``base_lr -> (step -> lr)``.
        last_epoch: as in torch (``-1`` to start fresh).
        **params: the constructor's other arguments, shared by every group.

    ``state_dict()`` holds ``last_epoch``, base lrs and ``params`` (plain numbers, so
    ``torch.load(weights_only=True)`` works); the schedule functions are rebuilt by the constructor.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Callable[..., Callable[[int], float]],
        *,
        last_epoch: int = -1,
        **params: Any,
    ) -> None:
        self.schedule_params = dict(params)
        # torch's rule: a fresh scheduler keeps an existing initial_lr; a resumed one requires it.
        bases = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.schedules = [schedule(float(base), **params) for base in bases]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [schedule(max(self.last_epoch, 0)) for schedule in self.schedules]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "schedules"})


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> ScheduleLR:
    """Linear warmup + cosine decay to ``min_lr`` for every group (see :func:`warmup_cosine_decay`)."""
    return ScheduleLR(
        optimizer, warmup_cosine_decay, warmup_steps=warmup_steps, total_steps=total_steps, min_lr=min_lr
    )

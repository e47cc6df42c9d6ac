"""One training run of one arm (optimizer + lr + schedule + clipping) on one task with one seed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

import ravine
from ravine import schedules
from ravine.experiments.models import LowPrecision
from ravine.experiments.tasks import Task

WARMUP_FRACTION = 0.1  # warmup_cosine warms up over the first 10% of the steps
STEP_DECAY = (3, 0.1)  # step decay: lr × 0.1 at each third of the run (two drops)
PARAMETER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
STOPPING_POINTS = (0.25, 0.5, 1.0)  # the fractions of the budget at which claims and studies compare runs


def stopping_steps(steps: int, eval_every: int, fraction: float) -> tuple[int, int]:
    """(steps, eval_every) of a run stopped at ``fraction`` of a ``steps`` budget (at least one step)."""
    if fraction == 1:
        return steps, eval_every
    stopped = max(1, round(fraction * steps))
    return stopped, min(eval_every, stopped)


@dataclass(frozen=True)
class Arm:
    """What is being compared: an optimizer (a :func:`ravine.create_optimizer` name and its options), an lr,
    a schedule (``constant``, ``cosine``, ``step`` or ``warmup_cosine``, whose warmup lasts the fraction
    ``warmup`` of the steps, default 0.1), an optional clipping norm, and the dtype of the model's parameters
    (``float32``, or ``bfloat16`` for pure-bf16 training). ``budget`` is the fraction of the task's steps the arm
    runs (its schedule is rescaled to them): a stopping point. ``task`` names the workload when it is not the
    claim's own (a claim across model widths); ``until`` stops the run at the first evaluation whose validation
    loss is at or below it (a time-to-target measurement), and ``eval_every`` replaces the task's evaluation
    interval (the resolution of that time)."""

    label: str
    optimizer: str
    lr: float
    options: tuple[tuple[str, Any], ...] = ()
    schedule: str = "constant"
    clip: float | None = None
    dtype: str = "float32"
    warmup: float = WARMUP_FRACTION
    budget: float = 1.0
    task: str | None = None
    until: float | None = None
    eval_every: int | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Invalid schedule: {self.schedule!r} (choose from {', '.join(SCHEDULES)})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Invalid lr: {self.lr} (lr must be a finite number > 0)")
        if not 0 < self.budget <= 1:
            raise ValueError(f"Invalid budget: {self.budget} (a fraction of the task's steps in (0, 1])")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"Invalid warmup: {self.warmup} (a fraction of the steps in [0, 1))")
        if self.until is not None and not math.isfinite(self.until):
            raise ValueError(f"Invalid until: {self.until} (a finite validation loss to stop at)")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"Invalid eval_every: {self.eval_every} (a positive number of steps)")
        if self.dtype not in PARAMETER_DTYPES:
            raise ValueError(f"Invalid dtype: {self.dtype!r} (choose from {', '.join(PARAMETER_DTYPES)})")
        if self.clip is not None and self.kwargs.get("step_in_backward"):
            raise ValueError(f"Invalid clip: {self.clip} (global-norm clipping needs every gradient before the "
                             "step; with step_in_backward use the optimizer's clip_in_backward option)")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)

    def options_text(self) -> str:
        """``weight_decay=0.01, state_dtype=int8`` — the optimizer's options as written in the report."""
        return ", ".join(f"{k}={_number_text(v)}" for k, v in self.options)

    def describe(self) -> str:
        """``adam(lr=0.001, weight_decay=0.01), cosine, clip 1`` — everything that defines the arm."""
        options = self.options_text()
        text = f"{self.optimizer}(lr={self.lr:.3g}{', ' + options if options else ''})"
        if self.schedule != "constant":
            text += f", {self.schedule} schedule"
            if self.schedule == "warmup_cosine" and self.warmup != WARMUP_FRACTION:
                text += f" (warmup {self.warmup:.3g})"
        if self.clip is not None:
            text += f", grad-norm clip {self.clip:g}"
        if self.dtype != "float32":
            text += f", {self.dtype} parameters"
        if self.budget != 1:
            text += f", {self.budget:g} of the steps"
        if self.task is not None:
            text += f", on {self.task}"
        if self.until is not None:
            every = f" (evaluated every {self.eval_every} steps)" if self.eval_every is not None else ""
            text += f", stops at validation loss ≤ {self.until:g}{every}"
        return text


def _number_text(value: Any) -> str:
    """``0.01``, ``(0.9, 0.999)``: floats to 4 significant digits, tuples of them likewise."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_number_text, value)) + ")"
    return str(value)


def _step_decay(lr: float, total_steps: int) -> schedules.Schedule:
    parts, gamma = STEP_DECAY
    return schedules.step_decay(lr, step_size=math.ceil(total_steps / parts), gamma=gamma)


SCHEDULES: dict[str, Callable[[float, int, float], schedules.Schedule]] = {
    "constant": lambda lr, total, warmup: schedules.constant(lr),
    "cosine": lambda lr, total, warmup: schedules.cosine_decay(lr, total_steps=total),
    "step": lambda lr, total, warmup: _step_decay(lr, total),
    "warmup_cosine": lambda lr, total, warmup: schedules.warmup_cosine_decay(
        lr, warmup_steps=max(1, round(warmup * total)), total_steps=total),
}


@dataclass
class Run:
    """Everything one run measured. Losses are per training step; ``evals`` are (step, val loss, val accuracy)."""

    task: str
    arm: Arm
    seed: int
    steps: int
    train_loss: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)  # wall time since the run began, at each eval
    diverged_at: int | None = None
    stopped_at: int | None = None  # the step at which the run reached its arm's target (``Arm.until``) and stopped
    divergence_limit: float = math.inf
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    state_bytes: int = 0
    parameters: int = 0
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["arm"] = {**asdict(self.arm), "options": self.arm.kwargs}
        return record


def train(task: Task, arm: Arm, seed: int, steps: int, eval_every: int, device: torch.device | str = "cpu",
          on_step: Callable[[int], None] | None = None) -> Run:
    """Train ``task``'s model with ``arm`` for ``steps`` steps; stops early (and records where) on divergence.

    A diverged run is scored as an untrained model (``task.untrained``: for a classifier, test loss ln(classes)
    and accuracy 1/classes). An optimizer with ``train()``/``eval()`` modes (Schedule-Free) is evaluated in eval
    mode, on the weights its authors say to evaluate.
    """
    device = torch.device(device)
    started = time.perf_counter()
    torch.manual_seed(seed)  # a user's task need not seed its own model
    model = task.model(seed, device)
    if arm.dtype != "float32":
        model = LowPrecision(model, PARAMETER_DTYPES[arm.dtype])
    generator = torch.Generator().manual_seed(seed)
    optimizer = ravine.create_optimizer(arm.optimizer, model, lr=arm.lr, **arm.kwargs)
    scheduler = schedules.ScheduleLR(optimizer, lambda lr: SCHEDULES[arm.schedule](lr, steps, arm.warmup))
    modes = _has_modes(optimizer)
    run = Run(task.name, arm, seed, steps, parameters=sum(p.numel() for p in model.parameters()))
    for step in range(steps):
        loss = task.loss(model, task.batch(generator, device))
        value = loss.item()
        if step == 0:
            run.divergence_limit = task.divergence_limit(value)
        if not math.isfinite(value) or value > run.divergence_limit:
            run.diverged_at = step
            break
        run.train_loss.append(value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if arm.clip is not None:
            ravine.grads.clip_grad_norm_(model.parameters(), arm.clip)
        optimizer.step()
        scheduler.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            run.evals.append((step + 1, *_evaluate(task, model, optimizer if modes else None, "val", device)))
            run.eval_seconds.append(time.perf_counter() - started)
        if on_step is not None:
            on_step(step + 1)
        if arm.until is not None and run.evals and run.evals[-1][0] == step + 1 and run.evals[-1][1] <= arm.until:
            run.stopped_at = step + 1
            break
    run.state_bytes = ravine.state_bytes(optimizer)
    if run.diverged or not all(math.isfinite(v) for _, v, _ in run.evals):
        run.diverged_at = run.diverged_at if run.diverged else steps
        run.test_loss, run.test_accuracy = task.untrained(seed, device)
    else:
        run.test_loss, run.test_accuracy = _evaluate(task, model, optimizer if modes else None, "test", device)
    run.seconds = time.perf_counter() - started
    return run


def _has_modes(optimizer: Any) -> bool:
    """Whether the optimizer (inside any wrappers such as Lookahead) has Schedule-Free's train/eval modes."""
    inner = optimizer
    while isinstance(getattr(inner, "optimizer", None), torch.optim.Optimizer):
        inner = inner.optimizer
    return callable(getattr(inner, "eval", None)) and callable(getattr(inner, "train", None))


def _evaluate(task: Task, model: torch.nn.Module, modes: Any, split: str, device: torch.device
              ) -> tuple[float, float]:
    """``task.evaluate`` with the model in eval mode (and the optimizer too, when it has modes); both are put
    back in train mode afterwards."""
    model.eval()
    if modes is not None:
        modes.eval()
    try:
        return task.evaluate(model, split, device)
    finally:
        model.train()
        if modes is not None:
            modes.train()

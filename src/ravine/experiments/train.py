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
from ravine.experiments.tasks import Task, chance_loss, cross_entropy

DIVERGENCE_FACTOR = 2.0  # a run has diverged once its loss is non-finite or above 2 × the chance loss
WARMUP_FRACTION = 0.1  # warmup_cosine warms up over the first 10% of the steps
STEP_DECAY = (3, 0.1)  # step decay: lr × 0.1 at each third of the run (two drops)
PARAMETER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Arm:
    """What is being compared: an optimizer (a :func:`ravine.create_optimizer` name and its options), an lr,
    a schedule (``constant``, ``cosine``, ``step`` or ``warmup_cosine``), an optional clipping norm, and the
    dtype of the model's parameters (``float32``, or ``bfloat16`` for pure-bf16 training)."""

    label: str
    optimizer: str
    lr: float
    options: tuple[tuple[str, Any], ...] = ()
    schedule: str = "constant"
    clip: float | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Invalid schedule: {self.schedule!r} (choose from {', '.join(SCHEDULES)})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Invalid lr: {self.lr} (lr must be a finite number > 0)")
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
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.options)

    def describe(self) -> str:
        """``adam(lr=0.001, weight_decay=0.01), cosine, clip 1`` — everything that defines the arm."""
        options = self.options_text()
        text = f"{self.optimizer}(lr={self.lr:.3g}{', ' + options if options else ''})"
        if self.schedule != "constant":
            text += f", {self.schedule} schedule"
        if self.clip is not None:
            text += f", grad-norm clip {self.clip:g}"
        if self.dtype != "float32":
            text += f", {self.dtype} parameters"
        return text


def _step_decay(lr: float, total_steps: int) -> schedules.Schedule:
    parts, gamma = STEP_DECAY
    return schedules.step_decay(lr, step_size=math.ceil(total_steps / parts), gamma=gamma)


SCHEDULES: dict[str, Callable[[float, int], schedules.Schedule]] = {
    "constant": lambda lr, total: schedules.constant(lr),
    "cosine": lambda lr, total: schedules.cosine_decay(lr, total_steps=total),
    "step": _step_decay,
    "warmup_cosine": lambda lr, total: schedules.warmup_cosine_decay(
        lr, warmup_steps=max(1, round(WARMUP_FRACTION * total)), total_steps=total),
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
    diverged_at: int | None = None
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

    A diverged run is scored as an untrained model: test loss ln(classes), test accuracy 1/classes.
    """
    device = torch.device(device)
    started = time.perf_counter()
    model = task.model(seed, device)
    if arm.dtype != "float32":
        model = LowPrecision(model, PARAMETER_DTYPES[arm.dtype])
    generator = torch.Generator().manual_seed(seed)
    optimizer = ravine.create_optimizer(arm.optimizer, model, lr=arm.lr, **arm.kwargs)
    scheduler = schedules.ScheduleLR(optimizer, lambda lr: SCHEDULES[arm.schedule](lr, steps))
    run = Run(task.name, arm, seed, steps, parameters=sum(p.numel() for p in model.parameters()))
    limit = DIVERGENCE_FACTOR * chance_loss(task)
    for step in range(steps):
        inputs, targets = task.batch(generator, device)
        loss = cross_entropy(model(inputs), targets)
        value = loss.item()
        if not math.isfinite(value) or value > limit:
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
            run.evals.append((step + 1, *task.evaluate(model, "val", device)))
        if on_step is not None:
            on_step(step + 1)
    run.state_bytes = ravine.state_bytes(optimizer)
    if run.diverged or not all(math.isfinite(v) for _, v, _ in run.evals):
        run.diverged_at = run.diverged_at if run.diverged else steps
        run.test_loss, run.test_accuracy = chance_loss(task), 1.0 / task.classes
    else:
        run.test_loss, run.test_accuracy = task.evaluate(model, "test", device)
    run.seconds = time.perf_counter() - started
    return run

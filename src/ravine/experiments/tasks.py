"""The training tasks ``ravine compare`` runs: an MLP and a small conv net on the digits, a character GPT.

A task owns its data, model, mini-batch sampler, loss and evaluation; the runner
(:mod:`ravine.experiments.train`) knows nothing else about it. A user's own task (``ravine compare --task
module:function``) is adapted to the same interface by :mod:`ravine.experiments.user_task`. Seeds enter in
exactly two places: the initial weights (``torch.manual_seed``) and the mini-batch order (a
``torch.Generator``), so two arms run with the same seed start from the same weights and see the same batches —
every comparison is paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from ravine.experiments import data
from ravine.experiments.models import MLP, CharGPT, SmallCNN

# The validation loss a study's "time to target" is measured to, fixed in code before any study ran: about what a
# well-tuned AdamW reaches by the end of the budget (AlgoPerf sets its targets from tuned baselines), so reaching
# it at all takes a well-tuned run.
# every GPT width: the same loss, so the steps each width needs can be compared
TARGETS = {"digits": 0.1, "digits-cnn": 0.1, "gpt": 2.0, "gpt-128": 2.0, "gpt-256": 2.0, "gpt-512": 2.0}
DIVERGENCE_FACTOR = 2.0  # a classifier has diverged once its loss is non-finite or above 2 × the chance loss

class Task(Protocol):
    """Everything the runner asks of a task (a user's task gets the optional parts filled in by
    :func:`ravine.experiments.user_task.adapt`)."""

    name: str
    title: str
    description: str
    steps: int  # the full budget
    quick_steps: int  # the --quick budget
    eval_every: int
    quick_eval_every: int
    step_cost: float  # relative cost of one training step (for the ETA), digits = 1
    tune_seeds: tuple[int, ...]  # the sweeps' seeds, never among the reported seeds 0…N−1
    target: float  # the validation loss a study's time to target is measured to

    def model(self, seed: int, device: torch.device) -> nn.Module: ...

    def batch(self, generator: torch.Generator, device: torch.device) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> tuple[float, float]: ...

    def divergence_limit(self, first_loss: float) -> float:
        """The training loss above which a run counts as diverged (given the run's first loss)."""
        ...

    def untrained(self, seed: int, device: torch.device, split: str = "test") -> tuple[float, float]:
        """(loss, accuracy) on ``split`` a diverged run is scored with: an untrained model's."""
        ...


class Classification:
    """Cross-entropy classification into ``classes`` classes (a sequence's last axis holds the logits): a diverged
    run is one whose loss exceeds twice the chance loss ln(classes), and it scores as chance."""

    classes: int

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        return cross_entropy(model(inputs), targets)

    def divergence_limit(self, first_loss: float) -> float:
        return DIVERGENCE_FACTOR * math.log(self.classes)

    def untrained(self, seed: int, device: torch.device, split: str = "test") -> tuple[float, float]:
        return math.log(self.classes), 1.0 / self.classes


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


@torch.no_grad()
def _loss_and_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    loss = cross_entropy(logits, targets).item()
    accuracy = (logits.argmax(-1) == targets).float().mean().item()
    return loss, accuracy


@dataclass(frozen=True)
class DigitsMLP(Classification):
    """A 64-128-128-10 ReLU MLP on scikit-learn's digits, mini-batches of 64 drawn with replacement."""

    name: str = "digits"
    title: str = "MLP on the digits"
    description: str = ("scikit-learn's 8×8 digits (1,078 train / 359 val / 360 test, standardised), "
                        "a 64-128-128-10 ReLU MLP, batches of 64")
    steps: int = 800
    quick_steps: int = 150
    eval_every: int = 20
    quick_eval_every: int = 10
    classes: int = 10
    step_cost: float = 1.0
    tune_seeds: tuple[int, ...] = (1000, 1001, 1002)  # cheap runs, noisy final losses: average three
    target: float = TARGETS["digits"]
    batch_size: int = 64

    def model(self, seed: int, device: torch.device) -> nn.Module:
        torch.manual_seed(seed)
        return MLP(64, (128, 128), self.classes).to(device)

    def shaped(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's view of a batch of flat 64-pixel rows."""
        return pixels

    def batch(self, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        train = data.digits()["train"]
        index = torch.randint(len(train), (self.batch_size,), generator=generator)
        return self.shaped(train.inputs[index]).to(device), train.targets[index].to(device)

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> tuple[float, float]:
        part = data.digits()[split]
        with torch.no_grad():
            return _loss_and_accuracy(model(self.shaped(part.inputs).to(device)), part.targets.to(device))


@dataclass(frozen=True)
class DigitsCNN(DigitsMLP):
    """A small conv net on the same digits as 1×8×8 images: two 3×3 convolutions (16, 32 channels), a 2×2 max
    pool and a linear classifier, mini-batches of 64 drawn with replacement."""

    name: str = "digits-cnn"
    title: str = "conv net on the digits"
    description: str = ("scikit-learn's 8×8 digits as 1×8×8 images (the MLP's splits), two 3×3 convolutions "
                        "(16, 32 channels, ReLU), 2×2 max pool, linear classifier, batches of 64")
    steps: int = 600
    quick_steps: int = 100
    step_cost: float = 3.0
    tune_seeds: tuple[int, ...] = (1000,)
    target: float = TARGETS["digits-cnn"]

    def model(self, seed: int, device: torch.device) -> nn.Module:
        torch.manual_seed(seed)
        return SmallCNN(8, self.classes).to(device)

    def shaped(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.view(-1, 1, 8, 8)


def _gpt_description(width: int, thousands: int) -> str:
    return (f"character-level GPT-2-style transformer (2 pre-LN blocks, width {width}, 4 heads, context 64, "
            f"~{thousands}k parameters) on the source of {len(data.STDLIB_FILES)} standard-library modules (each "
            "file: first 80% train, next 10% val, last 10% test), batches of 32")


@dataclass(frozen=True)
class StdlibGPT(Classification):
    """A 2-layer, 4-head character GPT (context 64, width 64 unless ``width`` says otherwise) on Python's
    standard-library source."""

    name: str = "gpt"
    title: str = "character GPT on Python's standard library"
    description: str = _gpt_description(64, 110)
    steps: int = 600
    quick_steps: int = 60
    eval_every: int = 50
    quick_eval_every: int = 15
    classes: int = data.VOCAB_SIZE
    step_cost: float = 40.0
    tune_seeds: tuple[int, ...] = (1000,)
    target: float = TARGETS["gpt"]
    batch_size: int = 32
    context: int = 64
    eval_windows: int = 128
    width: int = 64

    def model(self, seed: int, device: torch.device) -> nn.Module:
        torch.manual_seed(seed)
        return CharGPT(data.VOCAB_SIZE, self.context, width=self.width, depth=2, heads=4).to(device)

    def _windows(self, stream: torch.Tensor, starts: torch.Tensor, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.arange(self.context + 1)
        chunk = stream[starts[:, None] + offsets]
        return chunk[:, :-1].to(device), chunk[:, 1:].to(device)

    def batch(self, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        stream = data.stdlib_text()["train"]
        starts = torch.randint(len(stream) - self.context - 1, (self.batch_size,), generator=generator)
        return self._windows(stream, starts, device)

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> tuple[float, float]:
        stream = data.stdlib_text()[split]
        windows = self.eval_windows * (2 if split == "test" else 1)
        # evenly spaced, fixed windows: every evaluation of every run sees the same characters
        starts = torch.linspace(0, len(stream) - self.context - 2, windows).long()
        inputs, targets = self._windows(stream, starts, device)
        with torch.no_grad():
            return _loss_and_accuracy(model(inputs), targets)


def _wide_gpt(width: int, thousands: int, step_cost: float) -> StdlibGPT:
    name = f"gpt-{width}"
    return StdlibGPT(name=name, title=f"character GPT, width {width}",
                     description=_gpt_description(width, thousands), step_cost=step_cost, target=TARGETS[name],
                     width=width)


WIDE_GPT = _wide_gpt(128, 417, 100.0)
# too slow for the CPU defaults (about 4× and 16× the width-128 model's work per step): a GPU study's widths
WIDER_GPTS = (_wide_gpt(256, 1621, 400.0), _wide_gpt(512, 6388, 1600.0))
TASKS: dict[str, Task] = {task.name: task for task in (DigitsMLP(), DigitsCNN(), StdlibGPT(), WIDE_GPT,
                                                        *WIDER_GPTS)}

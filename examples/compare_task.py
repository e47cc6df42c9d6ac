"""Your own workload in `ravine compare`: a regression MLP on scikit-learn's bundled diabetes data.

Run the tuning study on it (every optimizer gets the same 16 quasi-random trials, then its best is rerun over
5 seeds and timed to the target):

    ravine compare --task examples/compare_task.py:make_task -o diabetes-study
    ravine compare --task examples/compare_task.py:make_task --optimizers adamw,sgd --quick

A task is any object with ``name``, ``steps``, ``target``, ``model(seed, device)``, ``batch(generator, device)``,
``loss(model, batch)`` and ``evaluate(model, split, device)``; the rest is optional (see docs/experiments.md).
This one has no accuracy, so ``evaluate`` returns the loss alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DiabetesRegression:
    name: str = "diabetes"
    title: str = "MLP regression on the diabetes data"
    description: str = ("scikit-learn's diabetes data (442 patients, 10 features, standardised; 60/20/20 split), "
                        "a 10-64-64-1 tanh MLP, mean squared error, batches of 32")
    steps: int = 400
    target: float = 0.55  # validation MSE in standardised units; predicting the mean scores about 1.0
    eval_every: int = 20
    batch_size: int = 32

    @cached_property
    def data(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        from sklearn.datasets import load_diabetes

        inputs, targets = load_diabetes(return_X_y=True)
        x, y = torch.tensor(inputs, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # a fixed split
        parts = {"train": order[:265], "val": order[265:353], "test": order[353:]}
        mean, std = x[parts["train"]].mean(0), x[parts["train"]].std(0)
        y_mean, y_std = y[parts["train"]].mean(), y[parts["train"]].std()
        return {name: ((x[i] - mean) / std, (y[i] - y_mean) / y_std) for name, i in parts.items()}

    def model(self, seed: int, device: torch.device) -> nn.Module:
        layers = nn.Sequential(nn.Linear(10, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        return layers.to(device)

    def batch(self, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.data["train"]
        index = torch.randint(len(targets), (self.batch_size,), generator=generator)
        return inputs[index].to(device), targets[index].to(device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        return F.mse_loss(model(inputs).squeeze(-1), targets)

    def evaluate(self, model: nn.Module, split: str, device: torch.device) -> float:
        inputs, targets = self.data[split]
        return self.loss(model, (inputs.to(device), targets.to(device))).item()


def make_task() -> DiabetesRegression:
    return DiabetesRegression()

"""A short demonstration run: every ravine optimizer trains the same small network on two spirals."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import ravine
from ravine.registry import VARIANTS

# Every variant the registry names, at its illustrative (untuned) demo learning rate.
OPTIMIZERS: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
    name: functools.partial(lambda params, v: v.build(params, v.demo_lr), v=variant)
    for name, variant in VARIANTS.items() if variant.in_demo
}


@dataclass(frozen=True)
class DemoResult:
    name: str
    first_loss: float
    final_loss: float
    accuracy: float
    seconds: float
    state_bytes_per_param: float


def two_spirals(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in the plane, labelled 0 and 1, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0.25, 3.0 * math.pi, n // 2)
    arm = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / (3.0 * math.pi)
    x = torch.cat([arm, -arm]) + 0.02 * torch.randn(n, 2, generator=g)
    y = torch.cat([torch.zeros(n // 2), torch.ones(n // 2)])
    return x, y


def _state_bytes(optimizer: torch.optim.Optimizer, n_params: int) -> float:
    return ravine.state_bytes(optimizer) / n_params


def train(name: str, steps: int = 300, seed: int = 0) -> DemoResult:
    """Train a 2-64-64-1 tanh network with full-batch steps of the named optimizer."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)
    )
    optimizer = OPTIMIZERS[name](list(model.parameters()))
    x, y = two_spirals(seed=seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start = time.perf_counter()
    first = final = math.nan
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
        if step == 0:
            first = loss.item()
        final = loss.item()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = ((model(x).squeeze(1) > 0).float() == y).float().mean().item()
    n_params = sum(p.numel() for p in model.parameters())
    return DemoResult(name, first, final, accuracy, seconds, _state_bytes(optimizer, n_params))


def format_table(results: list[DemoResult]) -> str:
    lines = [
        "| optimizer | first loss | final loss | accuracy | time (s) | state bytes/param |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.first_loss:.4f} | {r.final_loss:.4f} | {r.accuracy:.1%} | {r.seconds:.2f} "
            f"| {r.state_bytes_per_param:.1f} |"
        )
    return "\n".join(lines)

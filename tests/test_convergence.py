"""Every optimizer, on both paths and inside Lookahead, actually trains: logistic regression on a fixed task."""

from __future__ import annotations

import pytest
import torch

import ravine

LRS = {
    ravine.SGD: {"lr": 0.5, "momentum": 0.9},
    ravine.Adagrad: {"lr": 0.5},
    ravine.RMSprop: {"lr": 0.02},
    ravine.Adam: {"lr": 0.05},
    ravine.AdamW: {"lr": 0.05},
    ravine.Lion: {"lr": 0.02},
    ravine.ADOPT: {"lr": 0.05},
}


def _task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    true_w = torch.randn(10, 1, generator=g)
    y = (x @ true_w + 0.1 * torch.randn(256, 1, generator=g) > 0).float()
    return x, y


def _train(make_optimizer, steps=150):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    optimizer = make_optimizer(model.parameters())
    x, y = _task()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("cls", list(LRS), ids=[c.__name__ for c in LRS])
def test_optimizer_converges_on_logistic_regression(cls, foreach):
    losses = _train(lambda params: cls(params, foreach=foreach, **LRS[cls]))
    assert losses[-1] < 0.35 * losses[0], f"{cls.__name__}: {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_lookahead_adam_converges():
    losses = _train(lambda params: ravine.Lookahead(ravine.Adam(params, lr=0.05), k=5, alpha=0.5))
    assert losses[-1] < 0.35 * losses[0]

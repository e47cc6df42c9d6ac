"""The tutorial forms equal their formulas, written out here by hand."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import torch

import ravine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _grads(steps: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(steps)]


def _run(optimizer_cls, steps=30, **kwargs) -> torch.Tensor:
    w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_cls([w], **kwargs)
    for g in _grads(steps):
        w.grad = g.clone()
        optimizer.step()
    return w.detach()


def test_momentum_as_exponentially_weighted_average():
    beta, lr = 0.9, 0.1
    w, v = torch.zeros(6, dtype=torch.float64), None
    for g in _grads(30):
        v = g.clone() if v is None else beta * v + (1 - beta) * g  # EWA, started at g₁
        w = w - lr * v
    torch.testing.assert_close(_run(ravine.SGD, lr=lr, momentum=beta, dampening=beta), w)


def test_nesterov_look_ahead_form():
    mu, lr = 0.9, 0.1
    w, v = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    for g in _grads(30):
        v = mu * v + g
        w = w - lr * (g + mu * v)
    torch.testing.assert_close(_run(ravine.SGD, lr=lr, momentum=mu, nesterov=True), w)


def test_rmsprop_with_bias_correction():
    alpha, lr, eps = 0.9, 0.01, 1e-8
    w, s = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    for t, g in enumerate(_grads(30), start=1):
        s = alpha * s + (1 - alpha) * g**2
        w = w - lr * g / (torch.sqrt(s / (1 - alpha**t)) + eps)
    torch.testing.assert_close(_run(ravine.RMSprop, lr=lr, alpha=alpha, bias_correction=True), w)


def _seed_adam(lr: float, eps: float, eps_root: float) -> torch.Tensor:
    """The tutorial bias-corrected Adam: w ← w − η·m̂ / (√(v̂ + ε_root) + ε)."""
    b1, b2 = 0.9, 0.999
    w = torch.zeros(6, dtype=torch.float64)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(_grads(30), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t) + eps_root) + eps)
    return w


def test_adam_with_eps_inside_the_square_root():
    torch.testing.assert_close(_run(ravine.Adam, lr=0.1, eps_root=1e-3), _seed_adam(0.1, 1e-8, 1e-3))


def test_adam_matches_the_seeds_bias_corrected_formula():
    expected = _seed_adam(0.1, 1e-8, 0.0)
    torch.testing.assert_close(_run(ravine.Adam, lr=0.1), expected)
    assert math.isfinite(expected.sum().item())


def test_alternate_forms_example_runs(capsys):
    runpy.run_path(str(EXAMPLES / "alternate_forms.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "momentum as EWA" in out and "Adam with eps inside the root" in out

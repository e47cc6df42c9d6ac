"""``differentiable=True``: the step is differentiable with respect to parameters, gradients, state and a tensor
lr, checked with ``torch.autograd.gradcheck`` as torch's own optimizer tests check theirs."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import ravine

CASES = [
    (ravine.SGD, {"momentum": 0.9, "weight_decay": 0.1}),
    (ravine.SGD, {"momentum": 0.9, "nesterov": True, "maximize": True}),
    (ravine.Adagrad, {"weight_decay": 0.1, "lr_decay": 0.1}),
    (ravine.RMSprop, {"centered": True, "momentum": 0.5}),
    (ravine.Adam, {"weight_decay": 0.1}),
    (ravine.AdamW, {"amsgrad": True}),
    (ravine.Adadelta, {"weight_decay": 0.1}),
    (ravine.Adamax, {}),
    (ravine.ASGD, {"t0": 2.0}),
    (ravine.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    (ravine.RAdam, {"betas": (0.9, 0.9)}),
    (ravine.Rprop, {}),
    (ravine.Lion, {"weight_decay": 0.1}),
    (ravine.ADOPT, {}),
]
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(CASES)]


def _warm_state(cls, config) -> dict:
    """The state a step of this configuration keeps (made once, outside the check)."""
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = cls([p], **config)
    p.grad = torch.ones(5, dtype=torch.float64)
    opt.step()
    return opt.state[p]


@pytest.mark.parametrize(("cls", "config"), CASES, ids=IDS)
def test_the_step_passes_gradcheck(cls, config):
    warm = _warm_state(cls, config)
    keys = [k for k, v in warm.items() if torch.is_tensor(v) and v.dim() > 0]  # the per-element state
    g = torch.Generator().manual_seed(0)

    def step(p, grad, lr, *states):
        p = p.clone()  # a non-leaf parameter, updated in place by the step, as in meta-learning
        p.grad = grad
        optimizer = cls([p], lr=lr, differentiable=True, **config)
        if warm:  # a state ten steps in: the per-element tensors are the checked inputs, the rest as warm
            optimizer.state[p] = {k: v.clone() if torch.is_tensor(v) else v for k, v in warm.items()}
            optimizer.state[p].update({k: s.clone() for k, s in zip(keys, states, strict=True)})
            if "step" in warm:
                optimizer.state[p]["step"] = torch.tensor(10.0)
        optimizer.step()
        return (p, *(optimizer.state[p][k] for k in keys))

    def leaf(low, high):
        return (torch.rand(5, generator=g, dtype=torch.float64) * (high - low) + low).requires_grad_()

    # running averages of squares well above the squared running mean (centered RMSprop takes a square root)
    inputs = (leaf(-1, 1), leaf(-1, 1), torch.tensor(0.05, dtype=torch.float64, requires_grad=True),
              *(leaf(-0.3, 0.3) if k == "grad_avg" else leaf(0.5, 1.5) for k in keys))
    assert gradcheck(step, inputs)


@pytest.mark.parametrize(("cls", "config"), CASES, ids=IDS)
def test_a_differentiable_step_computes_what_the_ordinary_step_does(cls, config):
    g = torch.Generator().manual_seed(1)
    start = [torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    runs = []
    for differentiable in (False, True):
        params = [t.clone().requires_grad_() for t in start]
        work = [p.clone() for p in params] if differentiable else params  # non-leaf tensors, updated in place
        optimizer = cls(work, lr=0.05, differentiable=differentiable, **config)
        for step in range(5):
            for p in work:
                p.grad = torch.full_like(p, 0.1 * (step + 1)) + p.detach()
            optimizer.step()
        runs.append([p.detach() for p in work])
    for ordinary, differentiable in zip(*runs, strict=True):
        torch.testing.assert_close(differentiable, ordinary, rtol=1e-12, atol=1e-12)


def test_a_learned_learning_rate_gets_a_gradient():
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    p = w.clone()
    optimizer = ravine.Adam([p], lr=lr, differentiable=True)
    for _ in range(3):
        p.grad = 2 * p.detach()
        optimizer.step()
    (p**2).sum().backward()  # how the loss after three steps depends on lr (and on the start w)
    assert lr.grad is not None and lr.grad < 0 and w.grad is not None  # a larger lr lowers this loss


def test_what_differentiable_mode_refuses():
    p = torch.zeros(3, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="`fused` does not support `differentiable`"):
        ravine.Adam([p], fused=True, differentiable=True)
    with pytest.raises(ValueError, match=r"Adam\(differentiable=True\) runs per tensor .* foreach"):
        ravine.Adam([p], foreach=True, differentiable=True)
    with pytest.raises(ValueError, match="Adafactor does not support differentiable=True"):
        ravine.Adafactor([p], differentiable=True)
    ravine.Adam([p], differentiable=False)  # torch's default value is accepted everywhere
    assert ravine.Adam([p]).param_groups[0]["differentiable"] is False


def test_the_differentiable_stand_in_offers_the_same_operations():
    from ravine.engine.differentiable import DiffTensor
    from ravine.engine.tensorlist import TensorList

    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_") or n == "__neg__"} - {"t", "tensors", "layout"}

    assert public(DiffTensor) == public(TensorList)

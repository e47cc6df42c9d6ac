"""The default path on the CPU batches small tensors into multi-tensor runs: bit for bit the per-tensor path."""

from __future__ import annotations

import pytest
import torch

import ravine
from ravine.engine import eager
from ravine.registry import ALGORITHMS

ELEMENTWISE = sorted(name for name, cls in ALGORITHMS.items() if cls.kind == "elementwise")
# Small tensors (batched), one at the batching threshold and one above it (stepped alone); runs of small
# tensors longer than one multi-tensor run.
SHAPES = [(3,), (5, 7), (eager.SMALL,), (eager.SMALL + 1,), *[(4000,)] * 70]


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in SHAPES]


def _train(cls: type, params: list[torch.Tensor], **options) -> list[torch.Tensor]:
    optimizer = cls(params, lr=1e-2, **options)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        optimizer.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype, options", [
    (torch.float32, {}),
    (torch.float32, {"maximize": True}),
    (torch.complex64, {}),
    (torch.bfloat16, {}),
], ids=["float32", "maximize", "complex64", "bfloat16"])
def test_default_path_is_bit_identical_to_per_tensor(name, dtype, options):
    cls = ALGORITHMS[name]
    default = _train(cls, _params(dtype), **options)
    per_tensor = _train(cls, _params(dtype), foreach=False, **options)
    for a, b in zip(default, per_tensor, strict=True):
        assert torch.equal(a, b)


def test_default_path_batches_small_tensors_and_steps_large_ones_alone(monkeypatch):
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(eager, "run", lambda opt, batch, group, hp: calls.append(("multi", len(batch))))
    monkeypatch.setattr(eager, "run_each", lambda opt, batch, group, hp: calls.append(("each", len(batch))))
    params = _params(torch.float32)
    for p in params:
        p.grad = torch.ones_like(p)
    ravine.Adam(params).step()
    assert ("each", 2) in calls  # the tensors at and above the threshold
    multi = [n for kind, n in calls if kind == "multi"]
    assert sum(multi) == len(SHAPES) - 2 and len(multi) >= 2  # the small ones, in more than one run


@pytest.mark.parametrize("name, options", [
    ("adamw", {"cautious": True}), ("lion", {"cautious": True}), ("sgd", {"momentum": 0.9, "cautious": True}),
    ("adam", {"amsgrad": True, "weight_decay": 0.1}), ("ademamix", {}),
])
def test_default_path_is_bit_identical_with_modifiers_and_options(name, options):
    cls = ALGORITHMS[name]
    default = _train(cls, _params(torch.float32), **options)
    per_tensor = _train(cls, _params(torch.float32), foreach=False, **options)
    for a, b in zip(default, per_tensor, strict=True):
        assert torch.equal(a, b)

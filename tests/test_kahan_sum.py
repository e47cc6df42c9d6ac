"""kahan_sum=True: bfloat16 parameters with Kahan-compensated updates follow float32 training."""

from __future__ import annotations

import io

import pytest
import torch

import ravine

PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}


def _start() -> torch.Tensor:
    return torch.randn(3000, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)


def _train(p: torch.Tensor, steps: int = 300, **options) -> torch.optim.Optimizer:
    optimizer = ravine.AdamW([p], lr=1e-4, **options)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        p.grad = (torch.randn(p.shape, generator=g) * 0.1 + 0.05).to(p.dtype)
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("path", list(PATHS))
def test_compensated_bfloat16_parameters_follow_float32_ones(path):
    start = _start()
    exact = start.float().requires_grad_()  # the same starting values, in float32
    _train(exact, foreach=False)
    moved = (exact.detach() - start.float()).norm()
    plain = start.clone().requires_grad_()
    _train(plain, **PATHS[path])
    compensated = start.clone().requires_grad_()
    optimizer = _train(compensated, kahan_sum=True, **PATHS[path])
    # each update (~1e-4) is far below half a bfloat16 ulp of the parameters (~4e-3): rounded away without
    # compensation, kept with it
    assert (plain.detach().float() - exact.detach()).norm() > 0.5 * moved
    comp = optimizer.state[compensated]["kahan_comp"]
    assert comp.dtype == torch.bfloat16 and bool((comp != 0).any())
    value = compensated.detach().float() + comp.float()  # the parameter's value: p plus its rounding error
    assert (value - exact.detach()).norm() < 0.02 * moved
    # and the bfloat16 parameter itself is that value rounded: within half an ulp of float32 training
    ulp = torch.finfo(torch.bfloat16).eps * exact.detach().abs()
    assert bool(((compensated.detach().float() - exact.detach()).abs() <= 0.51 * ulp + 0.02 * moved).all())


def test_compensation_is_bit_identical_across_eager_paths_and_resumes_bit_for_bit():
    a, b = _start().requires_grad_(), _start().requires_grad_()
    _train(a, steps=20, kahan_sum=True, foreach=False)
    _train(b, steps=20, kahan_sum=True, foreach=True)
    assert torch.equal(a, b)
    first = _start().requires_grad_()
    optimizer = _train(first, steps=10, kahan_sum=True)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    resumed = first.detach().clone().requires_grad_()
    again = ravine.AdamW([resumed], lr=1e-4, kahan_sum=True)
    again.load_state_dict(torch.load(buffer))
    assert again.state[resumed]["kahan_comp"].dtype == torch.bfloat16
    assert torch.equal(again.state[resumed]["kahan_comp"], optimizer.state[first]["kahan_comp"])


def test_kahan_sum_keeps_nothing_for_float32_parameters_and_composes_with_compact_state():
    p = torch.zeros(4, requires_grad=True)
    optimizer = _train(p, steps=2, kahan_sum=True)
    assert "kahan_comp" not in optimizer.state[p]
    q = _start().requires_grad_()
    optimizer = _train(q, steps=3, kahan_sum=True, state_dtype="int8")
    state = optimizer.state[q]
    assert state["kahan_comp"].dtype == torch.bfloat16 and state["exp_avg"].dtype == torch.int8
    with pytest.raises(ValueError, match=r"differentiable=True.*leave kahan_sum unset"):
        ravine.AdamW([p], kahan_sum=True, differentiable=True)

"""WeightEMA: an EMA of the weights equal to torch's AveragedModel with an EMA, on every path."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import clone_params, make_params, set_grads
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import ravine

PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}


def _reference(params: list[torch.Tensor], steps: int, decay: float) -> list[torch.Tensor]:
    """torch.optim.AdamW with AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(decay)) updated after each step."""
    model = torch.nn.ParameterList(params)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    optimizer = torch.optim.AdamW(params, lr=1e-2, foreach=False)
    for step in range(steps):
        set_grads(params, step, skip_some=False)
        optimizer.step()
        averaged.update_parameters(model)
    return [p.detach() for p in averaged.module.parameters()]


@pytest.mark.parametrize(("inner", "path"), [("ravine", path) for path in PATHS] + [("torch", "per-tensor")])
def test_weight_ema_equals_averaged_model_with_an_ema(inner, path):
    ref_params = make_params()
    params = clone_params(ref_params)
    expected = _reference(ref_params, 12, decay=0.9)
    cls = ravine.AdamW if inner == "ravine" else torch.optim.AdamW
    ema = ravine.WeightEMA(cls(params, lr=1e-2, **PATHS[path]), decay=0.9)
    for step in range(12):
        set_grads(params, step, skip_some=False)
        ema.step()
    assert ema.count == 12
    for p, want in zip(params, expected, strict=True):
        # the per-tensor and multi-tensor paths run the same lerp as AveragedModel: bit for bit; the fused
        # kernel's lerp may contract a multiply-add differently (one float32 rounding)
        tol = {"rtol": 1e-6, "atol": 1e-6} if path == "fused" else {"rtol": 0, "atol": 0}
        torch.testing.assert_close(ema.average_of(p), want, **tol)
    if path == "fused":
        assert ema.optimizer._fused.folded  # the average was updated inside the fused kernel


def test_averaged_weights_swaps_in_and_back_and_the_state_dict_resumes_exactly():
    params = make_params()
    ema = ravine.WeightEMA(ravine.AdamW(params, lr=1e-2), decay=0.5)
    with pytest.raises(RuntimeError, match="no step taken yet"):
        with ema.averaged_weights():
            pass
    for step in range(3):
        set_grads(params, step, skip_some=False)
        ema.step()
    own = [p.detach().clone() for p in params]
    with ema.averaged_weights():
        assert all(torch.equal(p, ema.average_of(p)) for p in params)
    assert all(torch.equal(p, o) for p, o in zip(params, own, strict=True))
    saved = copy.deepcopy(ema.state_dict())  # as torch.save and torch.load would hand it back
    assert "ema_param" in saved["state"][0] and saved["param_groups"][0]["ema_count"] == 3
    twin_params = clone_params(params)
    twin = ravine.WeightEMA(ravine.AdamW(twin_params, lr=1e-2), decay=0.5)
    twin.load_state_dict(saved)
    for step in range(3, 5):
        set_grads(params, step, skip_some=False)
        set_grads(twin_params, step, skip_some=False)
        ema.step()
        twin.step()
    for a, b in zip(params, twin_params, strict=True):
        assert torch.equal(ema.average_of(a), twin.average_of(b))


def test_bad_arguments_are_refused_with_their_names():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="decay"):
        ravine.WeightEMA(ravine.AdamW([p]), decay=1.5)
    with pytest.raises(ValueError, match=r"WeightEMA wraps a torch\.optim\.Optimizer"):
        ravine.WeightEMA([p])
    ema = ravine.WeightEMA(ravine.AdamW([p]))
    with pytest.raises(KeyError, match="no average"):
        ema.average_of(p)


def test_a_skipped_non_finite_step_does_not_move_the_average():
    p = torch.ones(3, requires_grad=True)
    ema = ravine.WeightEMA(ravine.AdamW([p], lr=0.1, skip_nonfinite=True), decay=0.5)
    p.grad = torch.ones(3)
    ema.step()
    before = ema.average_of(p).clone()
    p.grad = torch.tensor([1.0, float("nan"), 1.0])
    with pytest.warns(RuntimeWarning, match="skipped a step"):
        ema.step()
    assert ema.count == 1 and torch.equal(ema.average_of(p), before)


@pytest.mark.parametrize("flags", [{}, {"fused": True}], ids=["default", "fused"])
def test_a_group_added_later_starts_its_own_average_and_the_others_keep_theirs(flags):
    a, b = torch.ones(4, requires_grad=True), torch.ones(4, requires_grad=True)
    ema = ravine.WeightEMA(ravine.SGD([a], lr=1.0, **flags), decay=0.5)
    for _ in range(2):
        a.grad = torch.ones(4)
        ema.step()
    before = ema.average_of(a).clone()
    ema.add_param_group({"params": [b]})
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    ema.step()
    torch.testing.assert_close(ema.average_of(a), torch.lerp(before, a.detach(), 0.5))
    assert torch.equal(ema.average_of(b), b.detach()) and ema.count == 3

"""step_in_backward=True: each parameter updated as its gradient arrives, equal to the ordinary step."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch
from torch import nn

import ravine
from ravine.registry import ALGORITHMS

PER_TENSOR = sorted(name for name, cls in ALGORITHMS.items()
                    if cls.kind in ("elementwise", "tensorwise") and cls.__name__ not in ("SparseAdam",
                                                                                           "MuonWithAuxAdam"))
OPTIONS = {"sgd": {"momentum": 0.9}}


def _model(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12, bias=bias), nn.Tanh(), nn.Linear(12, 12, bias=bias), nn.Tanh(),
                         nn.Linear(12, 1, bias=bias))


def _batches(n: int = 4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randn(16, 1, generator=g)) for _ in range(n)]


def _loss(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _ordinary(model, optimizer, batches, scheduler=None):
    for batch in batches:
        _loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()


def _in_backward(model, optimizer, batches, scheduler=None):
    for batch in batches:
        _loss(model, batch).backward()
        assert all(p.grad is None for p in model.parameters())  # freed as soon as used
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def _same(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", PER_TENSOR)
def test_step_in_backward_equals_the_ordinary_step(name):
    cls, options = ALGORITHMS[name], {"lr": 1e-2, **OPTIONS.get(name, {})}
    bias = cls.__name__ != "Muon"  # Muon takes matrices only
    ordinary, early = _model(bias), _model(bias)
    first = cls(ordinary.parameters(), **options)
    second = cls(early.parameters(), step_in_backward=True, **options)
    for optimizer in (first, second):
        if hasattr(optimizer, "train"):  # Schedule-Free
            optimizer.train()
    _ordinary(ordinary, first, _batches())
    _in_backward(early, second, _batches())
    _same(ordinary, early)
    for p, q in zip(ordinary.parameters(), early.parameters(), strict=True):
        for key, value in first.state[p].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(second.state[q][key])), key


ALL_THREE = {"state_dtype": "int8", "kahan_sum": True}  # with bfloat16 parameters


@pytest.mark.parametrize("options", [{"state_dtype": "int8"}, {"fused": True},
                                     {"state_dtype": "int8", "fused": True}, ALL_THREE,
                                     {**ALL_THREE, "fused": True}],
                         ids=["int8-state", "fused", "int8-state-fused", "all-three", "all-three-fused"])
def test_step_in_backward_composes_with_compact_state_and_the_fused_step(options):
    # every memory saver together: bfloat16 parameters with Kahan summation, 8-bit state, step in backward
    dtype = torch.bfloat16 if options.get("kahan_sum") else torch.float32
    ordinary, early = _model().to(dtype), _model().to(dtype)
    first = ravine.AdamW(ordinary.parameters(), lr=1e-2, **options)
    second = ravine.AdamW(early.parameters(), lr=1e-2, step_in_backward=True, **options)
    batches = [(x.to(dtype), y.to(dtype)) for x, y in _batches()]
    _ordinary(ordinary, first, batches)
    _in_backward(early, second, batches)
    _same(ordinary, early)
    for p, q in zip(ordinary.parameters(), early.parameters(), strict=True):
        a, b = first.state[p], second.state[q]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_updates_on_the_last_micro_batch_only():
    ordinary, early = _model(), _model()
    first = ravine.AdamW(ordinary.parameters(), lr=1e-2)
    second = ravine.AdamW(early.parameters(), lr=1e-2, step_in_backward=True)
    batches = _batches(6)
    for step in range(2):
        micro = batches[3 * step: 3 * step + 3]
        for batch in micro:
            _loss(ordinary, batch).backward()
        first.step()
        first.zero_grad()
        before = [p.detach().clone() for p in early.parameters()]
        for i, batch in enumerate(micro):
            with second.accumulating() if i < len(micro) - 1 else contextlib.nullcontext():
                _loss(early, batch).backward()
            if i < len(micro) - 1:
                _same_values = all(torch.equal(p, b) for p, b in zip(early.parameters(), before, strict=True))
                assert _same_values and all(p.grad is not None for p in early.parameters())
        second.step()
    _same(ordinary, early)


def test_step_updates_gradients_the_hooks_did_not_take_and_schedulers_follow():
    ordinary, early = _model(), _model()
    first = ravine.SGD(ordinary.parameters(), lr=0.1, momentum=0.9)
    second = ravine.SGD(early.parameters(), lr=0.1, momentum=0.9, step_in_backward=True)
    first_schedule = torch.optim.lr_scheduler.StepLR(first, step_size=1, gamma=0.5)
    second_schedule = torch.optim.lr_scheduler.StepLR(second, step_size=1, gamma=0.5)
    _ordinary(ordinary, first, _batches(3), first_schedule)
    _in_backward(early, second, _batches(3), second_schedule)
    _same(ordinary, early)
    for model, optimizer in ((ordinary, first), (early, second)):  # gradients assigned by hand: step() takes them
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
    _same(ordinary, early)


def test_clipping_per_tensor_and_by_the_previous_global_norm():
    max_norm = 0.05
    reference, early = _model(), _model()
    first = ravine.SGD(reference.parameters(), lr=0.1)
    second = ravine.SGD(early.parameters(), lr=0.1, step_in_backward=True,
                        clip_in_backward=("per_tensor", max_norm))
    for batch in _batches(3):
        _loss(reference, batch).backward()
        for p in reference.parameters():
            torch.nn.utils.clip_grad_norm_([p], max_norm)
        first.step()
        first.zero_grad()
        _loss(early, batch).backward()
        second.step()
    for p, q in zip(reference.parameters(), early.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)

    reference, early = _model(), _model()
    first = ravine.SGD(reference.parameters(), lr=0.1)
    second = ravine.SGD(early.parameters(), lr=0.1, step_in_backward=True,
                        clip_in_backward=("previous_global_norm", max_norm))
    previous = None
    for batch in _batches(3):
        _loss(reference, batch).backward()
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()])).item()
        if previous is not None and previous > max_norm:  # the first step is not clipped
            for p in reference.parameters():
                p.grad.mul_(max_norm / (previous + 1e-6))
        previous = norm
        first.step()
        first.zero_grad()
        _loss(early, batch).backward()
        second.step()
        assert second.param_groups[0]["previous_grad_norm"] == pytest.approx(norm, rel=1e-5)
    for p, q in zip(reference.parameters(), early.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    assert "previous_grad_norm" in second.state_dict()["param_groups"][0]


def test_combinations_that_cannot_be_exact_are_refused_with_both_named():
    params = list(_model().parameters())
    with pytest.raises(ValueError, match=r"step_in_backward=True\) cannot be combined with skip_nonfinite=True"):
        ravine.AdamW(params, step_in_backward=True, skip_nonfinite=True)
    with pytest.raises(ValueError, match=r"LBFGS\(step_in_backward=True\) cannot be combined with closure"):
        ravine.LBFGS(params, step_in_backward=True)
    with pytest.raises(ValueError, match=r"clip_in_backward=\('per_tensor', 1.0\).*needs step_in_backward=True"):
        ravine.AdamW(params, clip_in_backward=("per_tensor", 1.0))
    with pytest.raises(ValueError, match=r"Invalid clip_in_backward: \('global', 1.0\)"):
        ravine.AdamW(params, step_in_backward=True, clip_in_backward=("global", 1.0))
    with pytest.raises(ValueError, match=r"Invalid clip_in_backward: \('per_tensor', 0\)"):
        ravine.AdamW(params, step_in_backward=True, clip_in_backward=("per_tensor", 0))


def test_grad_scaler_is_refused_by_name():
    model = _model()
    optimizer = ravine.AdamW(model.parameters(), step_in_backward=True)
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(_loss(model, _batches(1)[0])).backward()
    with pytest.raises(RuntimeError, match=r"step_in_backward=True\) cannot be used with GradScaler"):
        scaler.step(optimizer)


def test_hooks_survive_a_checkpoint_a_deepcopy_and_wrap_with_lookahead():
    ordinary, early = _model(), _model()
    first = ravine.Lookahead(ravine.AdamW(ordinary.parameters(), lr=1e-2), k=2)
    second = ravine.Lookahead(ravine.AdamW(early.parameters(), lr=1e-2, step_in_backward=True), k=2)
    batches = _batches(6)
    _ordinary(ordinary, first, batches[:3])
    _in_backward(early, second, batches[:3])
    _same(ordinary, early)
    buffer = io.BytesIO()
    torch.save(second.state_dict(), buffer)
    buffer.seek(0)
    resumed_model = copy.deepcopy(early)
    resumed = ravine.Lookahead(ravine.AdamW(resumed_model.parameters(), lr=1e-2, step_in_backward=True), k=2)
    resumed.load_state_dict(torch.load(buffer))
    _ordinary(ordinary, first, batches[3:])
    _in_backward(resumed_model, resumed, batches[3:])
    _same(ordinary, resumed_model)
    twin_model, twin = copy.deepcopy((early, ravine.AdamW(early.parameters(), lr=1e-2, step_in_backward=True)))
    _loss(twin_model, batches[0]).backward()
    assert all(p.grad is None for p in twin_model.parameters())
    assert all(twin.state[p]["step"] == 1 for p in twin_model.parameters())


@pytest.mark.parametrize("wrapped", [False, True], ids=["AdamW", "Lookahead(AdamW)"])
def test_reloading_the_same_optimizer_mid_training_leaves_one_hook_per_parameter(wrapped):
    """load_state_dict on the optimizer in use (a resume in the same process) replaces its hooks rather than
    adding to them: the old ones, still firing first, had kept the step's settings from before the reload
    (here the scheduled lr), and a wrapper's set-up must stay registered."""
    def make(model, in_backward):
        optimizer = ravine.AdamW(model.parameters(), lr=1e-2, step_in_backward=in_backward)
        return ravine.Lookahead(optimizer, k=2) if wrapped else optimizer

    ordinary, early = _model(), _model()
    first, second = make(ordinary, False), make(early, True)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0 / (step + 1)) for o in (first, second)]
    batches = _batches(6)
    _ordinary(ordinary, first, batches[:3], schedules[0])
    _in_backward(early, second, batches[:3], schedules[1])
    second.load_state_dict(copy.deepcopy(second.state_dict()))
    _ordinary(ordinary, first, batches[3:], schedules[0])
    _in_backward(early, second, batches[3:], schedules[1])
    _same(ordinary, early)
    assert [len(p._post_accumulate_grad_hooks) for p in early.parameters()] == [1] * 6

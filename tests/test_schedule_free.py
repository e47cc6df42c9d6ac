"""Schedule-Free SGD, AdamW and RAdam against the authors' package (``schedulefree``); their train/eval modes."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import ravine

schedulefree = pytest.importorskip("schedulefree")

PAIRS = {
    "SGD": (ravine.ScheduleFreeSGD, schedulefree.SGDScheduleFree,
            {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "warmup_steps": 20, "r": 0.5,
             "weight_lr_power": 2.0}),
    "AdamW": (ravine.ScheduleFreeAdamW, schedulefree.AdamWScheduleFree,
              {"lr": 5e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.01, "warmup_steps": 20, "r": 0.5,
               "weight_lr_power": 1.5}),
    # RAdam: its rectification instead of a warmup; the first 4 steps (β₂ = 0.999) move only the second moment
    "RAdam": (ravine.ScheduleFreeRAdam, schedulefree.RAdamScheduleFree,
              {"lr": 5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "r": 0.5,
               "weight_lr_power": 1.5}),
    # ... or take plain gradient steps there
    "RAdam-sgd-phase": (ravine.ScheduleFreeRAdam, schedulefree.RAdamScheduleFree,
                        {"lr": 5e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.0, "r": 0.0,
                         "weight_lr_power": 2.0, "silent_sgd_phase": False}),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(32, 6, generator=g)
    return nn.functional.mse_loss(model(x), torch.sin(x.sum(1, keepdim=True)))


def _train(model, optimizer, steps, start=0) -> None:
    for step in range(start, start + steps):
        optimizer.zero_grad()
        _loss(model, step).backward()
        optimizer.step()


def _run_pair(name: str, steps: int, **flags):
    ours_cls, ref_cls, config = PAIRS[name]
    ours_model = _model()
    ref_model = copy.deepcopy(ours_model)
    ours = ours_cls(ours_model.parameters(), **config, **flags)
    ref = ref_cls(ref_model.parameters(), **config, foreach=flags.get("foreach", False) is True)
    ours.train()
    ref.train()
    _train(ours_model, ours, steps)
    _train(ref_model, ref, steps)
    return ours_model, ours, ref_model, ref


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("flags", [{"foreach": False}, {"foreach": True}, {"fused": True}],
                         ids=["per-tensor", "multi-tensor", "fused"])
def test_matches_the_reference_over_200_steps_in_both_modes(name, flags):
    ours_model, ours, ref_model, ref = _run_pair(name, 200, **flags)
    exact = "fused" not in flags
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-6, "atol": 1e-6}
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, **tol)  # y, in train mode
    ours.eval()
    ref.eval()
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, **tol)  # x, the average
    for key in ("k", "weight_sum", "lr_max", "scheduled_lr", "train_mode"):
        assert ours.param_groups[0][key] == pytest.approx(ref.param_groups[0][key], rel=1e-12), key


def test_step_in_eval_mode_is_an_error_that_changes_nothing():
    model = _model()
    optimizer = ravine.ScheduleFreeAdamW(model.parameters())
    assert optimizer.param_groups[0]["train_mode"]  # a new optimizer can step (the reference's needs train())
    _loss(model, 0).backward()
    optimizer.step()
    optimizer.eval()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match=r"step\(\) called in eval mode: call optimizer.train\(\)"):
        optimizer.step()
    assert optimizer.param_groups[0]["k"] == 1  # nothing advanced
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_eval_then_train_returns_to_the_same_weights():
    model = _model()
    optimizer = ravine.ScheduleFreeSGD(model.parameters(), lr=0.1)
    optimizer.train()
    _train(model, optimizer, 10)
    y = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    assert any(not torch.equal(a, b) for a, b in zip(y, model.parameters(), strict=True))
    optimizer.eval()  # a second call is a no-op
    optimizer.train()
    for a, b in zip(y, model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_checkpoint_taken_in_either_mode_resumes_bit_for_bit(mode):
    model = _model()
    optimizer = ravine.ScheduleFreeAdamW(model.parameters(), warmup_steps=5)
    optimizer.train()
    _train(model, optimizer, 8)
    getattr(optimizer, mode)()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    assert optimizer.state_dict()["param_groups"][0]["train_mode"] == (mode == "train")
    optimizer.train()
    _train(model, optimizer, 8, start=8)

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed_model = _model()
    resumed_model.load_state_dict(saved["model"])
    resumed = ravine.ScheduleFreeAdamW(resumed_model.parameters(), warmup_steps=5)
    resumed.load_state_dict(saved["optimizer"])
    resumed.train()
    _train(resumed_model, resumed, 8, start=8)
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loads_the_reference_packages_state_dict():
    _, _, ref_model, ref = _run_pair("AdamW", 5)
    fresh_model = copy.deepcopy(ref_model)
    fresh = ravine.ScheduleFreeAdamW(fresh_model.parameters(), **PAIRS["AdamW"][2])
    fresh.load_state_dict(copy.deepcopy(ref.state_dict()))  # a saved copy: loading shares tensors
    _train(fresh_model, fresh, 5, start=5)
    _train(ref_model, ref, 5, start=5)
    for a, b in zip(fresh_model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_works_through_lookahead_skip_nonfinite_and_grad_scaler():
    model = _model()
    optimizer = ravine.Lookahead(ravine.ScheduleFreeAdamW(model.parameters(), skip_nonfinite=True), k=3)
    optimizer.train()
    _train(model, optimizer, 6)
    next(model.parameters()).grad.fill_(float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(RuntimeWarning, match="skipped a step"):
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert optimizer.optimizer.param_groups[0]["k"] == 6  # the skipped step advanced no counter
    optimizer.eval()
    assert not optimizer.optimizer.param_groups[0]["train_mode"]
    optimizer.train()
    with pytest.raises(AttributeError, match="inner AdamW has no eval"):
        ravine.Lookahead(ravine.AdamW(model.parameters())).eval()

    scaled_model = _model()
    scaled = ravine.ScheduleFreeSGD(scaled_model.parameters(), lr=0.05)
    plain_model = copy.deepcopy(scaled_model)
    plain = ravine.ScheduleFreeSGD(plain_model.parameters(), lr=0.05)
    scaled.train()
    plain.train()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(5):
        scaled.zero_grad()
        scaler.scale(_loss(scaled_model, step)).backward()
        scaler.step(scaled)
        scaler.update()
    _train(plain_model, plain, 5)
    for a, b in zip(scaled_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_bad_arguments_name_themselves():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"Momentum must be between 0 and 1 exclusive: 1\.0"):
        ravine.ScheduleFreeSGD(params, momentum=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        ravine.ScheduleFreeAdamW(params, warmup_steps=-1)
    with pytest.raises(TypeError, match="r"):
        ravine.ScheduleFreeAdamW(params, r="0.5")
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        ravine.ScheduleFreeRAdam(params, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="warmup_steps"):  # RAdam's rectification replaces the warmup
        ravine.ScheduleFreeRAdam(params, warmup_steps=10)


def test_radam_moves_only_its_second_moment_in_the_silent_phase():
    model = _model()
    optimizer = ravine.ScheduleFreeRAdam(model.parameters(), lr=0.01)
    start = [p.detach().clone() for p in model.parameters()]
    _train(model, optimizer, 4)  # ρₜ ≤ 4 for t ≤ 4 with β₂ = 0.999 (ρ₅ = 4.996)
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))
    assert all(bool(optimizer.state[p]["exp_avg_sq"].any()) for p in model.parameters())
    _train(model, optimizer, 1, start=4)
    assert not all(torch.equal(a, b) for a, b in zip(start, model.parameters(), strict=True))

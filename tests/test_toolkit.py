"""The training toolkit: clipping, non-finite guards, mixed precision, EWA, parameter groups, the factory."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import amp_step, clone_params, make_params, set_grads
from torch import nn

import ravine
from ravine import grads

ALL = [ravine.SGD, ravine.Adagrad, ravine.RMSprop, ravine.Adam, ravine.AdamW, ravine.Lion, ravine.ADOPT,
       ravine.Adadelta, ravine.Adamax, ravine.ASGD, ravine.NAdam, ravine.RAdam, ravine.Rprop, ravine.Adafactor]
IDS = [c.__name__ for c in ALL]


# ---- clipping and non-finite detection ------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_equals_torch(norm_type):
    ours, theirs = make_params(), make_params()
    set_grads(ours, 0, skip_some=False)
    set_grads(theirs, 0, skip_some=False)
    total = grads.clip_grad_norm_(ours, max_norm=0.5, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm=0.5, norm_type=norm_type)
    assert torch.equal(total, expected)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs, strict=True))


def test_clip_grad_value_equals_torch_and_validates():
    ours, theirs = make_params(), make_params()
    set_grads(ours, 0, skip_some=False)
    set_grads(theirs, 0, skip_some=False)
    grads.clip_grad_value_(ours, 0.3)
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs, strict=True))
    with pytest.raises(ValueError, match=re.escape("Invalid max_norm: -1.0")):
        grads.clip_grad_norm_(ours, -1.0)


def test_nonfinite_grads_names_parameters_and_labels_nan_and_inf_correctly():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model(torch.ones(1, 2)).sum().backward()
    model[0].weight.grad[0, 0] = float("nan")
    model[1].bias.grad[0] = float("inf")
    model[1].weight.grad[0, 0] = float("nan")
    model[1].weight.grad[0, 1] = float("-inf")
    assert grads.nonfinite_grads(model) == {"0.weight": "NaN", "1.weight": "NaN and Inf", "1.bias": "Inf"}


# ---- skip_nonfinite -------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("cls", ALL, ids=IDS)
def test_skip_nonfinite_changes_nothing_counts_and_warns_once(cls, foreach):
    params = make_params()
    optimizer = cls(params, foreach=foreach, skip_nonfinite=True)
    set_grads(params, 0, skip_some=False)
    optimizer.step()
    before_params = [p.detach().clone() for p in params]
    before_state = {i: {k: v.clone() for k, v in optimizer.state[p].items()} for i, p in enumerate(params)}
    set_grads(params, 1, skip_some=False)
    params[2].grad.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match=r"non-finite gradients in param_groups\[0\]\['params'\]\[2\]"):
        optimizer.step()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second skip does not warn again
        optimizer.step()
    assert optimizer.skipped_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(params, before_params, strict=True))
    for i, p in enumerate(params):
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, before_state[i][key]), (i, key)
    assert optimizer.state_dict()["param_groups"][0]["skipped_steps"] == 2
    fresh = cls(clone_params(params), skip_nonfinite=True)
    fresh.load_state_dict(optimizer.state_dict())
    assert fresh.skipped_steps == 2


def test_lookahead_does_not_count_a_skipped_inner_step():
    params = make_params()
    la = ravine.Lookahead(ravine.Adam(params, skip_nonfinite=True), k=2)
    set_grads(params, 0, skip_some=False)
    params[0].grad[0, 0] = float("inf")
    with pytest.warns(RuntimeWarning):
        la.step()
    assert la.lookahead_step == 0


# ---- mixed precision ------------------------------------------------------------------------------
def _amp_step(model, optimizer, scaler, x, dtype, poison=False):
    amp_step(model, optimizer, scaler, x, dtype, poison=poison, clip=1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("cls", [*ALL, "Lookahead"], ids=[*IDS, "Lookahead"])
def test_grad_scaler_loop_works_and_skipped_steps_change_nothing(cls, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    params = model.parameters()
    optimizer = ravine.Lookahead(ravine.Adam(params)) if cls == "Lookahead" else cls(params)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(16, 4)
    for _ in range(3):
        _amp_step(model, optimizer, scaler, x, dtype)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    state = [{k: v.clone() for k, v in s.items()} for s in optimizer.state.values()]
    counter = getattr(optimizer, "lookahead_step", None)
    _amp_step(model, optimizer, scaler, x, dtype, poison=True)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    for saved, live in zip(state, optimizer.state.values(), strict=True):
        assert all(torch.equal(saved[k], live[k]) for k in saved)
    assert getattr(optimizer, "lookahead_step", None) == counter


@pytest.mark.parametrize("cls", ALL, ids=IDS)
def test_bfloat16_parameters_keep_float32_state_through_save_and_load(cls, tmp_path):
    params = [p.detach().to(torch.bfloat16).requires_grad_() for p in make_params()]
    extra = {"momentum": 0.9} if cls is ravine.SGD else {}
    optimizer = cls(params, lr=1e-3, **extra)
    for step in range(3):
        set_grads(params, step, skip_some=False)
        optimizer.step()
    floating = [v for s in optimizer.state.values() for k, v in s.items() if k != "step"]
    assert floating and all(v.dtype == torch.float32 for v in floating)
    torch.save(optimizer.state_dict(), tmp_path / "opt.pt")
    resumed = cls([p.detach().clone().requires_grad_() for p in params], lr=1e-3, **extra)
    resumed.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    for original, loaded in zip(optimizer.state.values(), resumed.state.values(), strict=True):
        for key, value in original.items():
            assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


def test_bfloat16_update_is_computed_in_float32_and_rounded_once():
    p32 = make_params()[0]
    p16 = p32.detach().to(torch.bfloat16).requires_grad_()
    ref = p16.detach().float().requires_grad_()
    g = torch.randn(p32.shape)
    ravine.Adam([p16], lr=1e-2)
    opt16, opt32 = ravine.Adam([p16], lr=1e-2), ravine.Adam([ref], lr=1e-2)
    p16.grad, ref.grad = g.to(torch.bfloat16), g.to(torch.bfloat16).float()
    opt16.step()
    opt32.step()
    assert torch.equal(p16, ref.detach().to(torch.bfloat16))


def test_state_dtype_option_and_its_validation():
    p = torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)
    optimizer = ravine.Adam([p], state_dtype=torch.bfloat16)
    p.grad = torch.ones(3, dtype=torch.bfloat16)
    optimizer.step()
    assert optimizer.state[p]["exp_avg"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match=re.escape("Invalid state_dtype: 'int16'")):
        ravine.Adam([p], state_dtype="int16")


def test_checkpoint_of_model_optimizer_scheduler_and_scaler_resumes_bit_identically(tmp_path):
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 1))
        optimizer = ravine.AdamW(ravine.param_groups(model, weight_decay=0.1), lr=1e-2)
        scheduler = ravine.schedules.warmup_cosine(optimizer, warmup_steps=3, total_steps=20)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**6)
        return model, optimizer, scheduler, scaler

    data = torch.randn(20, 32, 6, generator=torch.Generator().manual_seed(1))

    def train(parts, steps):
        model, optimizer, scheduler, scaler = parts
        for step in steps:
            _amp_step(model, optimizer, scaler, data[step], torch.bfloat16)
            scheduler.step()

    uninterrupted = build()
    train(uninterrupted, range(20))
    first = build()
    train(first, range(8))
    model, optimizer, scheduler, scaler = first
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}, tmp_path / "ckpt.pt")
    resumed = build()
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    for part, key in zip(resumed, ("model", "optimizer", "scheduler", "scaler"), strict=True):
        part.load_state_dict(ckpt[key])
    train(resumed, range(8, 20))
    for a, b in zip(uninterrupted[0].parameters(), resumed[0].parameters(), strict=True):
        assert torch.equal(a, b)
    assert uninterrupted[2].get_last_lr() == resumed[2].get_last_lr()


# ---- EWA ------------------------------------------------------------------------------------------
def test_ewa_with_and_without_bias_correction():
    corrected, raw = ravine.EWA(0.9), ravine.EWA(0.9, bias_correction=False)
    xs = [2.0, 4.0, 6.0]
    assert corrected.smooth(xs)[0] == pytest.approx(2.0)  # the correction removes the pull towards 0
    assert raw.smooth(xs) == pytest.approx([0.2, 0.58, 1.122])
    assert corrected.value == pytest.approx(1.122 / (1 - 0.9**3))
    resumed = ravine.EWA(0.5)
    resumed.load_state_dict(corrected.state_dict())
    assert resumed.update(8.0) == corrected.update(8.0)
    with pytest.raises(ValueError, match=re.escape("Invalid beta: 1.0")):
        ravine.EWA(1.0)


# ---- parameter groups and the factory -------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.scale = nn.Parameter(torch.ones(4))  # 1-D: exempt
        self.pos_embed = nn.Parameter(torch.zeros(3, 4))
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Parameter(torch.zeros(2, 2), requires_grad=False)


def test_param_groups_split_decay_and_honour_overrides():
    model = Tiny()
    overrides = {"head.*": {"lr": 1e-3}}
    groups = ravine.param_groups(model, weight_decay=0.1, no_decay=["pos_embed"], overrides=overrides)
    named = dict(model.named_parameters())
    assert all(named[n] is p for g in groups for n, p in g["params"])  # torch's named groups: (name, parameter)
    by_group = [({n for n, _ in g["params"]}, g["weight_decay"], g.get("lr")) for g in groups]
    assert ({"proj.weight"}, 0.1, None) in by_group
    assert ({"embed.weight", "proj.bias", "norm.weight", "norm.bias", "scale", "pos_embed"}, 0.0, None) in by_group
    assert ({"head.weight"}, 0.1, 1e-3) in by_group and ({"head.bias"}, 0.0, 1e-3) in by_group
    placed = [n for g in groups for n, _ in g["params"]]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(placed) == sorted(trainable)  # each exactly once, none dropped
    torch.optim.AdamW(groups)  # any torch optimizer accepts them
    ravine.Lion(groups)


@pytest.mark.parametrize("name", ravine.available_optimizers())
def test_create_optimizer_by_name(name):
    model = Tiny()
    target = [p for p in model.parameters() if p.ndim == 2] if name.endswith("muon") else model  # 2-D only
    optimizer = ravine.create_optimizer(name, target, lr=1e-3)
    assert isinstance(optimizer, torch.optim.Optimizer)
    if name.startswith("lookahead_"):
        assert isinstance(optimizer, ravine.Lookahead)


def test_create_optimizer_passes_lookahead_arguments_and_rejects_unknown_names():
    optimizer = ravine.create_optimizer("Lookahead-AdamW", Tiny().parameters(), lr=1e-3, k=3, alpha=0.8)
    assert (optimizer.k, optimizer.alpha) == (3, 0.8) and optimizer.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="Invalid optimizer name: 'adamx' \\(choose one of: sgd, adagrad"):
        ravine.create_optimizer("adamx", Tiny())


@pytest.mark.parametrize("named", [True, False], ids=["named parameters", "param_groups"])
def test_the_non_finite_warning_names_the_parameter_and_points_at_the_callers_line(named):
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    params = model.named_parameters() if named else ravine.param_groups(model, weight_decay=0.1)
    optimizer = ravine.AdamW(params, skip_nonfinite=True)
    model(torch.ones(1, 3)).sum().backward()
    model[1].weight.grad[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"non-finite gradients in 1\.weight \(warning once") as caught:
        optimizer.step()
    assert caught[0].filename == __file__  # this line, not a frame inside torch's decorators
    assert optimizer.skipped_steps == 1

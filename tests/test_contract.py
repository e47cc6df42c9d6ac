"""PyTorch's optimizer test contract, run generically over every ravine optimizer (see docs/contract.md).

Numbers in the test docstrings refer to the checklist in docs/contract.md (PyTorch's own optimizer tests).
"""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from helpers import assert_same_run, clone_params, make_params, set_grads
from optim_info import IDS, OPTIMIZERS, PATHS, configs_with_paths

CONFIGS = [pytest.param(info, cfg, id=i) for info, cfg, i in configs_with_paths()]
CONFIGS_WITH_FUSED = [pytest.param(info, cfg, id=i)
                      for info, cfg, i in configs_with_paths(paths=("per-tensor", "multi-tensor", "fused"))]
PLAIN_CONFIGS = [pytest.param(info, cfg, id=i) for info, cfg, i in configs_with_paths(paths=("per-tensor",))]


def _model_loss(w, b):
    x = torch.ones(5, dtype=w.dtype)
    return ((w @ x + b) ** 2).sum()


# ---- A. construction and validation -------------------------------------------------------------
@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_error_inputs_raise_the_documented_errors(info):
    """Items 7–9: every invalid configuration raises its error type with its message."""
    for error in info.errors:
        with pytest.raises(error.error, match=error.regex):
            info.cls(make_params(), **error.kwargs)


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_parameter_container_errors_match_torch(info):
    """Items 1–5."""
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable"):
        info.cls(p)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        info.cls([])
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        info.cls([p, p])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        info.cls([{"params": [p]}, {"params": [p]}])
    optimizer = info.cls([p])
    with pytest.raises(TypeError, match="param_group must be a dict"):
        optimizer.add_param_group([torch.zeros(2, requires_grad=True)])
    with pytest.raises(TypeError, match="optimizer parameters need to be organized in ordered collections"):
        optimizer.add_param_group({"params": {torch.zeros(2, requires_grad=True)}})
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):
        optimizer.add_param_group({"params": [1.0]})
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True) * 2]})
    optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": 0.5})
    assert optimizer.param_groups[1]["lr"] == 0.5
    assert all(key in optimizer.param_groups[1] for key in optimizer.defaults)


# ---- B. update correctness ----------------------------------------------------------------------
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
@pytest.mark.parametrize("scheduler", [None, "step", "plateau"])
@pytest.mark.parametrize(("info", "config"), CONFIGS_WITH_FUSED)
def test_loss_goes_the_right_way(info, config, scheduler, contiguous):
    """Item 10: 20 steps on (W·x + b)² lower the loss (raise it under maximize)."""
    torch.manual_seed(0)
    w = torch.randn(10, 5) if contiguous else torch.randn(10, 5, 2)[..., 0]
    w, b = w.requires_grad_(), torch.randn(10, requires_grad=True)
    optimizer = info.cls([w, b], **config)
    makers = {"step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, 10, 0.9),
              "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)}
    sched = makers[scheduler]() if scheduler else None
    initial = _model_loss(w, b).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = _model_loss(w, b)
        loss.backward()
        optimizer.step()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(loss.item())
        elif sched is not None:
            sched.step()
    final = _model_loss(w, b).item()
    assert final > initial if config.get("maximize") else final < initial


@pytest.mark.parametrize(("info", "config"), CONFIGS)
def test_per_group_lr_is_honoured_and_an_irrelevant_group_stays_put(info, config):
    """Items 11–12: outer lr 1e-28 leaves the second group unchanged while the first trains."""
    torch.manual_seed(0)
    w, b = torch.randn(10, 5, requires_grad=True), torch.randn(10, requires_grad=True)
    irrelevant = torch.randn(3, requires_grad=True)
    before = irrelevant.detach().clone()
    config = dict(config)
    lr = config.pop("lr", 1e-3)
    optimizer = info.cls([{"params": [w, b], "lr": lr}, {"params": [irrelevant]}], lr=1e-28, **config)
    initial = _model_loss(w, b).item()
    for _ in range(20):
        optimizer.zero_grad()
        _model_loss(w, b).backward()
        irrelevant.grad = torch.randn(3)
        optimizer.step()
    final = _model_loss(w, b).item()
    assert final > initial if config.get("maximize") else final < initial
    if info.lr_bounds_step:
        torch.testing.assert_close(irrelevant.detach(), before)


@pytest.mark.parametrize(("info", "config"), CONFIGS)
def test_tensor_lr_matches_float_lr(info, config):
    """Item 13 (where torch accepts a Tensor lr on this path: Adam and AdamW refuse it with foreach=True)."""
    config = dict(config)
    if config.get("foreach") and not info.tensor_lr_with_foreach:
        config.pop("lr", None)
        with pytest.raises(ValueError, match="lr as a Tensor is not supported for capturable=False and foreach"):
            info.cls(make_params(), lr=torch.tensor(1e-3), **config)
        return
    lr = config.pop("lr", 1e-3)
    a_params = make_params()
    b_params = clone_params(a_params)
    a, b = info.cls(a_params, lr=lr, **config), info.cls(b_params, lr=torch.tensor(lr), **config)
    assert_same_run(a, a_params, b, b_params, 5, exact=False, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize(("info", "config"), PLAIN_CONFIGS)
def test_multi_tensor_matches_per_tensor_with_none_grads_and_a_zero_dim_param(info, config):
    """Item 14 (float64, realigned each step as torch's TensorTracker does): gradients are None for
    every parameter at step 2 and for the first at steps 3–4; a 0-dim parameter is last but one."""
    ref_params = make_params(torch.float64)
    cand_params = clone_params(ref_params)
    reference = info.cls(ref_params, **config)
    candidate = info.cls(cand_params, **{**config, "foreach": True})
    assert_same_run(reference, ref_params, candidate, cand_params, 7, exact=False, rtol=1e-7, atol=1e-7,
                    realign=True)
    untouched_step = make_params(torch.float64)
    stepper = info.cls(untouched_step, **config)
    set_grads(untouched_step, 2)  # all None: a no-op that creates no state
    stepper.step()
    assert not stepper.state or info.cls.eager_state


@pytest.mark.parametrize("path", ["per-tensor", "multi-tensor"])
@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_mixed_dtypes_and_an_integer_parameter_without_grad(info, path):
    """Item 16 on one device: float64, float32 and bfloat16 parameters, plus an int64 tensor with no grad."""
    dtypes = (torch.float64, torch.float32, torch.bfloat16)
    params = [torch.randn(4, dtype=dt, requires_grad=True) for dt in dtypes]
    counter = torch.arange(3)
    optimizer = info.cls([*params, counter], **PATHS[path])
    reference = info.cls(clone_params(params))
    for step in range(3):
        set_grads(params, step, skip_some=False)
        set_grads(reference.param_groups[0]["params"], step, skip_some=False)
        optimizer.step()
        reference.step()
    for a, b in zip(reference.param_groups[0]["params"], params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-2 if b.dtype == torch.bfloat16 else 1e-6, atol=1e-5)
    assert torch.equal(counter, torch.arange(3))


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_step_counter_follows_the_default_dtype(info):
    """Items 17, 28: state['step'] is a 0-d CPU tensor, float64 under a float64 default dtype."""
    if not info.cls.step_counter:
        pytest.skip(f"{info.name} keeps no step counter (as its reference)")
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        params = make_params(torch.float64)
        optimizer = info.cls(params)
        set_grads(params, 0, skip_some=False)
        optimizer.step()
    finally:
        torch.set_default_dtype(previous)
    step = optimizer.state[params[0]]["step"]
    assert step.dtype == torch.float64 and step.dim() == 0 and step.device.type == "cpu"


@pytest.mark.parametrize("path", ["per-tensor", "multi-tensor"])
@pytest.mark.parametrize("info", [i for i in OPTIMIZERS if i.supports_complex], ids=lambda i: i.name)
def test_complex_parameters_equal_their_real_view_twins(info, path):
    """Items 20–21: a complex parameter steps exactly as its view_as_real twin, and as two real parameters."""
    g = torch.Generator().manual_seed(0)
    c = [torch.randn(10, 5, dtype=torch.complex64, generator=g).requires_grad_(),
         torch.randn(10, 5, generator=g).requires_grad_()]
    twin = [torch.view_as_real(c[0]).detach().clone().requires_grad_(), c[1].detach().clone().requires_grad_()]
    a, b = info.cls(c, **PATHS[path]), info.cls(twin, **PATHS[path])
    for _ in range(3):
        grads = [torch.randn(10, 5, dtype=torch.complex64, generator=g), torch.randn(10, 5, generator=g)]
        c[0].grad, c[1].grad = grads
        twin[0].grad, twin[1].grad = torch.view_as_real(grads[0]).clone(), grads[1].clone()
        a.step()
        b.step()
        torch.testing.assert_close(torch.view_as_real(c[0].detach()), twin[0].detach())
        torch.testing.assert_close(c[1], twin[1])


@pytest.mark.parametrize(("info", "config"), CONFIGS)
def test_zero_gradients_do_nothing(info, config):
    """Item 23 (configurations without weight decay; AdamW's decoupled decay is switched off)."""
    if config.get("weight_decay"):
        pytest.skip("weight decay moves parameters even with zero gradients")
    config = {**config, "weight_decay": 0.0} if info.decoupled_decay else config
    params = make_params()
    before = [p.detach().clone() for p in params]
    optimizer = info.cls(params, **config)
    for _ in range(3):
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
    for a, b in zip(before, params, strict=True):
        torch.testing.assert_close(b.detach(), a)


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_no_gradients_at_all_and_the_closure_forms(info):
    """Items 24, 26: params without grads; closure positional and keyword, run with grad enabled."""
    params = [torch.randn(3, requires_grad=False)]
    optimizer = info.cls(params)
    assert optimizer.step(lambda: 1.0) == 1.0
    assert optimizer.step(closure=None) is None
    w = torch.randn(3, requires_grad=True)
    optimizer = info.cls([w])
    grad_enabled = []

    def closure():
        grad_enabled.append(torch.is_grad_enabled())
        optimizer.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        assert optimizer.step(closure=closure) is not None
    assert grad_enabled == [True]


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_step_body_runs_without_grad_and_is_wrapped_once(info):
    """Item 27: the body runs under no_grad; torch's profiling wrapper is applied exactly once."""
    seen = []
    params = make_params()
    optimizer = info.cls(params)
    original_update = type(optimizer).update

    def spy(self, *args):
        seen.append(torch.is_grad_enabled())
        return original_update(self, *args)

    set_grads(params, 0, skip_some=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(optimizer), "update", spy)
        optimizer.step()
    assert seen and not any(seen)
    assert type(optimizer).step.hooked is True
    info.cls(make_params())  # a second instance does not wrap again
    assert not getattr(type(optimizer).step.__wrapped__, "hooked", False)


# ---- D. state_dict ------------------------------------------------------------------------------
@pytest.mark.parametrize(("info", "config"), CONFIGS)
def test_state_dicts_from_before_newer_flags_still_load(info, config):
    """Item 31: drop every flag added after the first release from the saved groups, load, step; the loaded
    groups stay as saved and read the missing options through the defaults."""
    params = make_params()
    optimizer = info.cls(params, **config)
    set_grads(params, 0, skip_some=False)
    optimizer.step()
    sd = copy.deepcopy(optimizer.state_dict())
    newer = {"foreach", "fused", "maximize", "skip_nonfinite", "state_dtype", "skipped_steps", "eps_root",
             "bias_correction", "decoupled_weight_decay", "differentiable", "capturable"}
    for group in sd["param_groups"]:
        for key in newer:
            group.pop(key, None)
    fresh = info.cls(clone_params(params), **config)
    fresh.load_state_dict(copy.deepcopy(sd))
    assert set(fresh.param_groups[0]) == set(sd["param_groups"][0])  # nothing added to the loaded group
    options = fresh.options(fresh.param_groups[0])
    for key, value in fresh.defaults.items():
        assert key in options, key
        if key in newer:
            assert options[key] == value  # a missing option reads as this optimizer's default
    set_grads(fresh.param_groups[0]["params"], 1, skip_some=False)
    fresh.step()


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_named_and_unnamed_state_dicts_load_both_ways(info):
    """Item 32."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    named = info.cls(model.named_parameters())
    model(torch.ones(1, 3)).sum().backward()
    named.step()
    sd = named.state_dict()
    assert sd["param_groups"][0]["param_names"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    unnamed = info.cls(copy.deepcopy(model).parameters())
    unnamed.load_state_dict(copy.deepcopy(sd))
    back = info.cls(copy.deepcopy(model).named_parameters())
    back.load_state_dict(copy.deepcopy(unnamed.state_dict()))
    for opt in (unnamed, back):
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        opt.step()


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_non_tensor_steps_load_and_structure_errors_are_torchs(info):
    """Items 34, 37, 38."""
    params = make_params()
    optimizer = info.cls(params, **({"momentum": 0.9} if info.cls.__name__ == "SGD" else {}))
    set_grads(params, 0, skip_some=False)
    optimizer.step()
    assert all(len(s) > 0 for s in optimizer.state.values())  # item 38: no empty state entries
    sd = copy.deepcopy(optimizer.state_dict())
    for state in sd["state"].values():
        if "step" in state:
            state["step"] = state["step"].item()
    fresh = info.cls(clone_params(params), **({"momentum": 0.9} if info.cls.__name__ == "SGD" else {}))
    fresh.load_state_dict(sd)
    assert all(torch.is_tensor(s["step"]) for s in fresh.state.values() if "step" in s)
    with pytest.raises(ValueError, match="loaded state dict has a different number of parameter groups"):
        info.cls([{"params": params[:2]}, {"params": params[2:]}]).load_state_dict(copy.deepcopy(sd))
    with pytest.raises(ValueError, match="loaded state dict contains a parameter group that doesn't match"):
        info.cls(params[:2]).load_state_dict(copy.deepcopy(sd))


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_state_dict_and_load_hooks(info):
    """Items 40–41: pre-hooks see/alter state, post-hooks may replace; load hooks run in order, prepend first."""
    params = make_params()
    optimizer = info.cls(params, lr=1e-3)
    calls = []
    optimizer.register_state_dict_pre_hook(lambda opt: calls.append("pre"))
    optimizer.register_state_dict_post_hook(lambda opt, sd: {**sd, "extra": 1})
    sd = optimizer.state_dict()
    assert calls == ["pre"] and sd["extra"] == 1
    fresh = info.cls(clone_params(params), lr=1e-3)

    def set_lr(value):
        def hook(opt, state_dict):
            state_dict["param_groups"][0]["lr"] = value
            return state_dict
        return hook

    fresh.register_load_state_dict_pre_hook(set_lr(0.002))
    fresh.register_load_state_dict_pre_hook(set_lr(0.003), prepend=True)
    loaded = []
    fresh.register_load_state_dict_post_hook(lambda opt: loaded.append(opt.param_groups[0]["lr"]))
    fresh.load_state_dict(sd)
    assert loaded == [0.002]


# ---- F. object protocol -------------------------------------------------------------------------
@pytest.mark.parametrize(("info", "config"), CONFIGS)
def test_repr_lists_every_group_option(info, config):
    """Item 42."""
    text = repr(info.cls(make_params(), **config))
    assert text.startswith(f"{info.name} (") and "Parameter Group 0" in text
    assert re.search(r"\n    lr: ", text) and "params" not in text


@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_zero_grad_without_set_to_none_zeroes_and_detaches(info):
    """Item 45."""
    params = make_params()
    optimizer = info.cls(params)
    set_grads(params, 0, skip_some=False)
    params[0].grad.requires_grad_(True)
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() and not p.grad.requires_grad for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


# ---- I. torch.compile ---------------------------------------------------------------------------
@pytest.mark.parametrize("info", OPTIMIZERS, ids=IDS)
def test_a_compiled_function_calling_step_equals_eager(info):
    """Item 53: torch.compile around opt.step() — the eager step runs inside it, bit for bit."""
    a_params = make_params()
    b_params = clone_params(a_params)
    a, b = info.cls(a_params), info.cls(b_params)

    @torch.compile
    def compiled_step():
        b.step()

    # compiled_step is one code object for every optimizer here: past dynamo's default of 8 recompiles it would
    # stop compiling it, and the later optimizers would test nothing
    with warnings.catch_warnings(), torch._dynamo.config.patch(recompile_limit=256):
        warnings.simplefilter("ignore")
        for step in range(2):
            set_grads(a_params, step, skip_some=False)
            set_grads(b_params, step, skip_some=False)
            a.step()
            compiled_step()
    assert all(torch.equal(x, y) for x, y in zip(a_params, b_params, strict=True))

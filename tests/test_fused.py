"""The fused path: the algorithms' own update compiled over flat buffers.

Graphs are shared across tests: hyperparameters are 0-d tensors and shapes are dynamic, so only a change in
an algorithm's branches (amsgrad, nesterov, weight decay on or off, ...) or dtype compiles a new graph.
"""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import pytest
import torch
from helpers import amp_step, assert_same_run, clone_params, flag_grid, make_params, set_grads
from torch._dynamo.utils import counters

import ravine
from ravine.engine import fused as fused_module


def _configs():
    yield from ((ravine.SGD, {"lr": 1e-2, **c}) for c in flag_grid(
        momentum=[0, 0.9], dampening=[0, 0.5], nesterov=[False, True], weight_decay=[0, 0.1],
        maximize=[False, True])
        if not (c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0)))
    yield from ((ravine.Adagrad, {"lr": 0.1, **c}) for c in flag_grid(
        lr_decay=[0, 0.5], weight_decay=[0, 0.1], initial_accumulator_value=[0, 0.1], maximize=[False, True]))
    yield from ((ravine.RMSprop, {"lr": 1e-2, **c}) for c in flag_grid(
        centered=[False, True], momentum=[0, 0.5], weight_decay=[0, 0.1], bias_correction=[False, True]))
    for cls in (ravine.Adam, ravine.AdamW):
        yield from ((cls, {"lr": 1e-2, "betas": (0.8, 0.9), **c}) for c in flag_grid(
            amsgrad=[False, True], weight_decay=[0, 0.1], maximize=[False, True], eps_root=[0.0, 1e-8]))
    yield from ((ravine.Lion, {"lr": 1e-3, **c}) for c in flag_grid(weight_decay=[0, 0.1], maximize=[False, True]))
    yield from ((ravine.ADOPT, {"lr": 1e-2, **c}) for c in flag_grid(
        decouple=[False, True], weight_decay=[0, 0.1], clip_lambda=[ravine.algorithms.adopt.quarter_power, None]))


CONFIGS = [pytest.param(cls, cfg, id=f"{cls.__name__}-{i}") for i, (cls, cfg) in enumerate(_configs())]


@pytest.mark.parametrize(("cls", "config"), CONFIGS)
def test_fused_matches_the_eager_path_over_200_steps(cls, config):
    ref_params = make_params()
    cand_params = clone_params(ref_params)
    reference = cls(ref_params, foreach=False, **config)
    candidate = cls(cand_params, fused=True, **config)
    # Realigned every step (torch's TensorTracker method); atol 1e-6 on O(1) values covers one float32 ulp of
    # operands that cancel (inductor contracts a·b + c into one FMA, eager rounds a·b first). torch's own
    # fused-vs-forloop check uses rtol 1.3e-6, atol 1e-5.
    assert_same_run(reference, ref_params, candidate, cand_params, 200, exact=False, rtol=1e-6, atol=1e-6,
                    realign=True)


def _fused_adamw_after(steps: int):
    """Parameters, a fused AdamW stepped ``steps`` times over them, and its one flat group."""
    params = make_params()
    optimizer = ravine.AdamW(params, fused=True)
    for step in range(steps):
        set_grads(params, step, skip_some=False)
        optimizer.step()
    (flat,) = optimizer._fused.flat_groups.values()
    return params, optimizer, flat


def test_step_counters_are_elements_of_one_buffer_and_a_replaced_state_is_noticed():
    params, optimizer, flat = _fused_adamw_after(3)
    steps = [optimizer.state[p]["step"] for p in params]
    assert all(s.shape == () and s.dtype == torch.float32 and s.item() == 3.0 for s in steps)
    assert {s.untyped_storage().data_ptr() for s in steps} == {flat.steps.untyped_storage().data_ptr()}
    # a state tensor replaced from outside (here: the moment of one parameter) breaks the group: rebuilt
    optimizer.state[params[0]]["exp_avg"] = optimizer.state[params[0]]["exp_avg"].clone()
    assert not flat.intact(optimizer.state)
    reference = ravine.AdamW(clone_params(params), foreach=False)
    reference.load_state_dict(optimizer.state_dict())
    for step in range(3, 5):
        set_grads(params, step, skip_some=False)
        set_grads(reference.param_groups[0]["params"], step, skip_some=False)
        optimizer.step()
        reference.step()
    for a, b in zip(params, reference.param_groups[0]["params"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert optimizer.state[params[0]]["step"].item() == 5.0


def test_parameters_gradients_and_state_live_in_flat_buffers():
    params, optimizer, flat = _fused_adamw_after(2)
    base = flat.param_buffer.data_ptr()
    assert [p.data_ptr() for p in params] == [base + 4 * o for o in flat.offsets[:-1]]
    assert all(flat.owns_grad(p) for p in params)
    exp_avg = flat.state_buffers["exp_avg"]
    assert optimizer.state[params[1]]["exp_avg"].data_ptr() == exp_avg.data_ptr() + 4 * flat.offsets[1]
    optimizer.zero_grad(set_to_none=False)  # torch's meaning: zero the gradients in place (here, the flat views)
    assert all(p.grad is not None and not p.grad.any() for p in params) and all(flat.owns_grad(p) for p in params)
    optimizer.zero_grad()  # torch's meaning: no gradient at all
    assert all(p.grad is None for p in params)


def test_autograd_accumulates_into_the_flat_gradient_views_and_training_matches_eager():
    def train(fused, set_to_none):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
        optimizer = ravine.Adam(model.parameters(), lr=1e-2, fused=fused)
        x = torch.randn(32, 5, generator=torch.Generator().manual_seed(1))
        for _ in range(15):
            optimizer.zero_grad(set_to_none=set_to_none)
            model(x).pow(2).mean().backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]

    eager = train(False, True)
    for set_to_none in (True, False):
        for a, b in zip(eager, train(True, set_to_none), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_changing_lr_betas_and_weight_decay_every_step_does_not_recompile():
    params = make_params()
    optimizer = ravine.AdamW(params, lr=1e-3, fused=True)
    scheduler = ravine.schedules.warmup_cosine(optimizer, warmup_steps=3, total_steps=30)
    for step in range(3):  # the first steps: eager, then the graph is compiled (or found)
        set_grads(params, step, skip_some=False)
        optimizer.step()
        scheduler.step()
    graphs = counters["stats"]["unique_graphs"]
    for step in range(3, 20):
        group = optimizer.param_groups[0]
        group["betas"] = (0.9 - 0.01 * step, 0.999 - 0.001 * step)
        group["weight_decay"] = 0.01 * (step + 1)
        set_grads(params, step, skip_some=False)
        optimizer.step()
        scheduler.step()
    assert counters["stats"]["unique_graphs"] == graphs


def test_hyperparameters_reach_the_kernel_when_they_change_return_or_change_type():
    """The fused step refills its cached hyperparameter tensors only when a number changes: a value that comes
    back, an int where a float was, a tensor lr and a float again must all reach the kernel."""
    ref_params = make_params()
    cand_params = clone_params(ref_params)
    reference = ravine.SGD(ref_params, lr=0.1, momentum=0.9, foreach=False)
    candidate = ravine.SGD(cand_params, lr=0.1, momentum=0.9, fused=True)
    lrs = [0.1, 0.1, 0.05, 0.1, 0.1, 1, 1.0, torch.tensor(0.02), 0.02, 0.02, 0.3, 0.3]
    decays = [0, 0, 0.1, 0.1, 0, 0, 1, 1, 0.5, 0.5, 0, 0]
    for step, (lr, decay) in enumerate(zip(lrs, decays, strict=True)):
        for optimizer, params in ((reference, ref_params), (candidate, cand_params)):
            optimizer.param_groups[0].update(lr=lr, weight_decay=decay)
            set_grads(params, step, skip_some=False)
            optimizer.step()
        for a, b in zip(ref_params, cand_params, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6, msg=f"step {step}: lr={lr}, wd={decay}")


def test_a_cached_hyperparameter_is_kept_only_for_the_very_same_number():
    same = fused_module.same_number
    assert same(0.1, 0.1) and same(0, 0) and same(-0.0, -0.0)
    assert not same(0.1, 0.2) and not same(0.0, -0.0) and not same(1, 1.0) and not same(float("nan"), float("nan"))


def test_recompile_limits_are_raised_only_around_the_compiled_calls(monkeypatch):
    """Past dynamo's limit a step would run uncompiled, silently: the fused step raises it while it calls, keeps
    a higher one the user set, and restores the user's values afterwards, even when the call fails."""
    config = torch._dynamo.config
    seen = []

    def recording(reductions=False):
        def call(*args):
            seen.append((config.recompile_limit, config.accumulated_recompile_limit))
            if len(seen) == 3:
                raise RuntimeError("compile failed")
        return call

    params = make_params()
    optimizer = ravine.SGD(params, lr=0.1, fused=True)
    monkeypatch.setattr(fused_module, "compiled_update", recording)
    monkeypatch.setattr(config, "recompile_limit", 8)
    monkeypatch.setattr(config, "accumulated_recompile_limit", 10_000)
    limit = fused_module.RECOMPILE_LIMIT
    for _ in range(2):
        set_grads(params, 0, skip_some=False)
        optimizer.step()
    assert seen == [(limit, 10_000)] * 2
    assert (config.recompile_limit, config.accumulated_recompile_limit) == (8, 10_000)
    with pytest.raises(RuntimeError, match="compile failed"):
        optimizer.step()
    assert (config.recompile_limit, config.accumulated_recompile_limit) == (8, 10_000)


def test_one_graph_serves_any_number_of_tensors():
    small = make_params(shapes=[(3, 4), (4,)])
    optimizer = ravine.Lion(small, lr=1e-3, fused=True)
    for step in range(2):
        set_grads(small, step, skip_some=False)
        optimizer.step()
    graphs = counters["stats"]["unique_graphs"]
    many = make_params(shapes=[(5, 3)] * 150 + [(7,)] * 150)  # 300 tensors, one flat buffer
    optimizer = ravine.Lion(many, lr=1e-3, fused=True)
    for step in range(2):
        set_grads(many, step, skip_some=False)
        optimizer.step()
    assert counters["stats"]["unique_graphs"] == graphs
    assert len(optimizer._fused.flat_groups) == 1


def test_state_dict_round_trip_and_loading_eager_state_into_a_fused_optimizer(tmp_path):
    params = make_params()
    eager = ravine.Adam(params, lr=1e-2, amsgrad=True)
    for step in range(5):
        set_grads(params, step, skip_some=False)
        eager.step()
    torch.save(eager.state_dict(), tmp_path / "opt.pt")
    fused_params = clone_params(params)
    fused = ravine.Adam(fused_params, lr=1e-2, amsgrad=True, fused=True)
    fused.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert_same_run(eager, params, fused, fused_params, 20, exact=False, rtol=1e-6, atol=1e-6,
                    grads=lambda ps, s: set_grads(ps, s + 5, skip_some=False))
    resumed_params = clone_params(fused_params)
    resumed = ravine.Adam(resumed_params, lr=1e-2, amsgrad=True, fused=True)
    resumed.load_state_dict(copy.deepcopy(fused.state_dict()))  # torch's load aliases tensors it can
    assert_same_run(fused, fused_params, resumed, resumed_params, 5, exact=True,
                    grads=lambda ps, s: set_grads(ps, s + 25, skip_some=False))


def test_odd_tensors_fall_back_to_the_per_tensor_path():
    complex_param = torch.randn(4, 3, dtype=torch.complex64, requires_grad=True)
    strided = torch.randn(6, 4).t().requires_grad_()  # non-contiguous
    params = [complex_param, strided]
    reference = ravine.Adam(clone_params(params), lr=1e-2)
    candidate = ravine.Adam(params, lr=1e-2, fused=True)
    assert_same_run(reference, reference.param_groups[0]["params"], candidate, params, 5, exact=True)
    assert not candidate._fused.flat_groups and not strided.is_contiguous()


def test_bfloat16_parameters_are_updated_in_float32():
    params = [p.detach().to(torch.bfloat16).requires_grad_() for p in make_params()]
    reference = ravine.AdamW(clone_params(params), lr=1e-2)
    candidate = ravine.AdamW(params, lr=1e-2, fused=True)
    assert_same_run(reference, reference.param_groups[0]["params"], candidate, params, 20, exact=False,
                    rtol=1e-2, atol=1e-2, grads=lambda ps, s: set_grads(ps, s, skip_some=False))
    assert all(v.dtype == torch.float32 for k, v in candidate.state[params[0]].items() if k != "step")


def test_fused_true_without_a_compiler_says_why(monkeypatch):
    monkeypatch.setattr(fused_module.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match=r"AdamW\(fused=True\) is not available: torch.compile needs a C\+\+"):
        ravine.AdamW(make_params(), fused=True)


def test_grad_scaler_and_lookahead_work_with_the_fused_path():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = ravine.Lookahead(ravine.AdamW(model.parameters(), lr=1e-2, fused=True), k=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**6)
    x = torch.randn(8, 4)
    for _ in range(5):
        amp_step(model, optimizer, scaler, x)
    before = [p.detach().clone() for p in model.parameters()]
    amp_step(model, optimizer, scaler, x, poison=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("unscale_first", [False, True], ids=["scaled-into-kernel", "unscale_-then-step"])
def test_grad_scaler_hands_the_fused_step_its_scale_and_overflows_change_nothing(unscale_first):
    def build(fused):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        return model, ravine.SGD(model.parameters(), lr=1e-2, momentum=0.9, fused=fused)  # scale-sensitive

    (eager_model, eager), (fused_model, fused) = build(False), build(True)
    assert fused._step_supports_amp_scaling and not eager._step_supports_amp_scaling
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in range(2)]
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    clip = 1.0 if unscale_first else None
    for _ in range(6):
        for model, optimizer, scaler in ((eager_model, eager, scalers[0]), (fused_model, fused, scalers[1])):
            amp_step(model, optimizer, scaler, x, dtype=torch.bfloat16, clip=clip)
    for a, b in zip(eager_model.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    before = [p.detach().clone() for p in fused_model.parameters()]
    state = [{k: v.clone() for k, v in s.items()} for s in fused.state.values()]
    amp_step(fused_model, fused, scalers[1], x, dtype=torch.bfloat16, poison=True, clip=clip)
    assert all(torch.equal(a, b) for a, b in zip(before, fused_model.parameters(), strict=True))
    for saved, live in zip(state, fused.state.values(), strict=True):
        assert all(torch.equal(saved[k], live[k]) for k in saved)  # step counters included


def test_group_keys_the_optimizer_does_not_declare_stay_out_of_the_fused_step():
    params = make_params()
    optimizer = ravine.Adam(params, fused=True)
    optimizer.param_groups[0]["tags"] = ["encoder", "frozen-later"]  # a user's own bookkeeping
    for step in range(3):
        set_grads(params, step, skip_some=False)
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)


# ---- a parameter without a gradient is never updated (torch's contract), on the fused path too -----------
class _Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk, self.left, self.right = (torch.nn.Linear(4, 4) for _ in range(3))

    def forward(self, x, use_right):
        h = torch.tanh(self.trunk(x))
        return (self.right(h) if use_right else self.left(h)).pow(2).mean()


def _scenario(make_optimizer):
    """10 steps: the right branch only on even steps; the trunk frozen for steps 4–6; at step 8 the user drops
    one gradient and assigns another."""
    model = _Branchy()
    optimizer = make_optimizer(model.parameters())
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    for step in range(10):
        model.trunk.requires_grad_(not 4 <= step <= 6)
        optimizer.zero_grad()
        model(x, use_right=step % 2 == 0).backward()
        if step == 8:
            model.left.bias.grad = None
            model.trunk.bias.grad = torch.full((4,), 0.5)
        optimizer.step()
        grads = [p.grad is None for p in model.parameters()]
    return model, optimizer, grads


@pytest.mark.parametrize("cls", [ravine.AdamW, ravine.SGD], ids=["AdamW", "SGD-momentum"])
def test_parameters_without_gradients_are_left_alone_as_in_torch(cls):
    config = {"lr": 0.05, "weight_decay": 0.1} | ({"momentum": 0.9} if cls is ravine.SGD else {})
    theirs = getattr(torch.optim, cls.__name__)
    reference, ref_opt, ref_none = _scenario(lambda ps: theirs(ps, foreach=False, **config))
    candidate, cand_opt, cand_none = _scenario(lambda ps: cls(ps, fused=True, **config))
    for (name, a), b in zip(reference.named_parameters(), candidate.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    ref_state, cand_state = ref_opt.state_dict()["state"], cand_opt.state_dict()["state"]
    for index, state in ref_state.items():
        for key, value in state.items():
            torch.testing.assert_close(cand_state[index][key], value, rtol=1e-6, atol=1e-6)
    assert ref_none == cand_none  # the same gradients are None after the last step
    candidate_grads = [p.grad for p in candidate.parameters()]
    cand_opt.zero_grad()
    assert all(p.grad is None for p in candidate.parameters()) and any(g is not None for g in candidate_grads)


def _reuse_scenario(make_optimizer, ready=None):
    """14 steps of a model trained by backward, against which the step's reuse of its last flat buffers is
    checked: the first layer frozen at steps 4-5, a gradient the user assigns at step 7, a parameter's data
    replaced at step 9, the state reloaded at step 11. ``ready`` records, per step, whether the step reused
    its last plan without regrouping."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    optimizer = make_optimizer(model.parameters())
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    first, last = model[0], model[2]
    for step in range(14):
        first.requires_grad_(step not in (4, 5))
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        if step == 7:
            last.bias.grad = last.bias.grad * 2.0  # a new tensor, not the buffer's view
        if step == 9:
            last.weight.data = last.weight.data.clone()  # the parameter leaves its flat buffer
        if step == 11:
            optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        if ready is not None:
            ready.append(False)
        optimizer.step()
    return model


# step 0 creates SGD's momentum (eager), 1 groups; 4 drops and 6 restores the frozen layer's gradients; 7 copies
# the assigned gradient, 9 and 11 regroup: each of these is followed by a reuse
@pytest.mark.parametrize(("cls", "config", "expected"), [
    (ravine.SGD, {"lr": 0.1, "momentum": 0.9}, [2, 3, 5, 8, 10, 12, 13]),
    (ravine.AdamW, {"lr": 0.05}, [1, 2, 3, 5, 8, 10, 12, 13]),
], ids=["SGD-momentum", "AdamW"])
def test_a_step_reuses_its_last_buffers_only_while_nothing_that_decides_them_changed(monkeypatch, cls, config,
                                                                                     expected):
    runner = fused_module.FusedRunner
    taken = []
    real_ready = runner.ready

    def spying(self, group):
        flats = real_ready(self, group)
        taken[-1] = flats is not None
        return flats

    monkeypatch.setattr(runner, "ready", spying)
    reference = _reuse_scenario(lambda ps: cls(ps, foreach=False, **config))
    candidate = _reuse_scenario(lambda ps: cls(ps, fused=True, **config), taken)
    for (name, a), b in zip(reference.named_parameters(), candidate.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert [step for step, hit in enumerate(taken) if hit] == expected
    # one gradient route per parameter: the buffers dropped at steps 9 and 11 route nothing any more
    assert [len(p._backward_hooks) for p in candidate.parameters()] == [1] * 4


def test_a_new_optimizer_for_the_same_model_takes_over_its_gradients():
    """A notebook builds a second fused optimizer for the model the first trained: once the first is gone, its
    gradient buffer is freed and backward routes into the second's buffer only, so each step copies nothing."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    reference = copy.deepcopy(model)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))

    def train(net, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()

    first = ravine.AdamW(model.parameters(), lr=1e-2, fused=True)
    train(model, first, 2)
    (flat,) = first._fused.flat_groups.values()
    old_buffer = weakref.ref(flat.grad_buffer)
    del first, flat
    gc.collect()
    second = ravine.AdamW(model.parameters(), lr=1e-2, fused=True)
    train(model, second, 2)
    assert old_buffer() is None
    assert [len(p._backward_hooks) for p in model.parameters()] == [1] * 4
    second.zero_grad()
    model(x).pow(2).mean().backward()
    (flat,) = second._fused.flat_groups.values()
    assert flat.grads_in_place()  # autograd wrote into the second optimizer's buffer
    second.step()
    theirs = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    train(reference, theirs, 2)
    train(reference, torch.optim.AdamW(reference.parameters(), lr=1e-2), 3)
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def test_a_model_whose_parameters_route_gradients_still_copies_and_saves(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = ravine.AdamW(model.parameters(), fused=True)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    clone = copy.deepcopy(model)
    pickle.loads(pickle.dumps(model))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    clone(torch.ones(1, 3)).sum().backward()  # the copy's gradients are its own
    assert clone.weight.grad.data_ptr() != model.weight.grad.data_ptr()


@pytest.mark.parametrize("skip_some", [False, True], ids=["all gradients", "some without gradient"])
def test_lookahead_synchronises_inside_the_fused_kernel_and_matches_the_eager_sync(skip_some, monkeypatch):
    ref_params, cand_params = make_params(), None
    cand_params = clone_params(ref_params)
    reference = ravine.Lookahead(ravine.AdamW(ref_params, foreach=False), k=3, alpha=0.5)
    candidate = ravine.Lookahead(ravine.AdamW(cand_params, fused=True), k=3, alpha=0.5)
    eager_syncs = []
    monkeypatch.setattr(candidate, "synchronize", lambda: eager_syncs.append(1))  # must not be needed
    for step in range(7):
        set_grads(ref_params, step, skip_some=skip_some)
        set_grads(cand_params, step, skip_some=skip_some)
        reference.step()
        candidate.step()
        if step == 2:  # the first sync step: the kernel updated the slow weights of the parameters it stepped
            stepped = [p for p in cand_params if p.grad is not None]
            assert candidate.optimizer._fused.folded == set(map(id, stepped))
        for a, b in zip(ref_params, cand_params, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
        for a, b in zip(ref_params, cand_params, strict=True):
            torch.testing.assert_close(candidate.slow_params[b], reference.slow_params[a], rtol=1e-6, atol=1e-6)
    assert not eager_syncs and candidate.lookahead_step == 7
    flat = next(f for f in candidate.optimizer._fused.flat_groups.values() if f.average_buffer is not None)
    # the slow weights of the group's parameters live in one flat buffer beside the parameter buffer
    assert all(candidate.slow_params[p] is view for p, view in zip(flat.params, flat.average_views, strict=True))


_SMALL_FIRST_STEP = """
import torch, ravine
p = torch.ones(8, requires_grad=True)
p.grad = torch.ones(8)
optimizer = ravine.SGD([p], lr=0.1, momentum=0.9, fused=True)
optimizer.step()  # eager: creates the momentum buffer
optimizer.step()  # compiled
"""


def test_a_step_first_compiled_for_a_small_buffer_still_runs_in_parallel(tmp_path):
    """With dynamic shapes one compiled kernel serves every buffer length, also from inductor's on-disk cache in
    later processes: it must not carry the serial loop inductor would choose for the first, tiny buffer (nor
    the thread count of the process that compiled it)."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", _SMALL_FIRST_STEP], env=env, check=True, timeout=300)
    kernels = [f.read_text() for f in cache.rglob("*.py")]
    loops = [k for k in kernels if "cpp_fused" in k and "ks0" in k]  # the kernels over the flat buffers
    assert loops and all("#pragma omp parallel" in k and "num_threads(" not in k for k in loops)

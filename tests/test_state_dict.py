"""Checkpoints: torch ⇄ ravine state dicts, round trips, torch.save with weights_only, pickle and deepcopy."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from helpers import assert_same_run, clone_params, make_params, set_grads

import ravine

TORCH_TWINS = [
    (ravine.SGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
    (ravine.Adagrad, torch.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    (ravine.RMSprop, torch.optim.RMSprop, {"centered": True, "momentum": 0.5}),
    (ravine.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True}),
    (ravine.AdamW, torch.optim.AdamW, {"lr": 1e-2}),
    (ravine.Adadelta, torch.optim.Adadelta, {"weight_decay": 0.1}),
    (ravine.Adamax, torch.optim.Adamax, {"lr": 1e-2}),
    (ravine.ASGD, torch.optim.ASGD, {"lambd": 1e-2, "t0": 3.0}),
    (ravine.NAdam, torch.optim.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    (ravine.RAdam, torch.optim.RAdam, {"betas": (0.8, 0.9)}),
    (ravine.Rprop, torch.optim.Rprop, {}),
    (ravine.Adafactor, torch.optim.Adafactor, {"weight_decay": 0.1}),
]
ALL = [
    (ravine.SGD, {"lr": 1e-2, "momentum": 0.9}),
    (ravine.Adagrad, {}),
    (ravine.RMSprop, {"centered": True, "momentum": 0.5, "bias_correction": True}),
    (ravine.Adam, {"amsgrad": True, "eps_root": 1e-8}),
    (ravine.AdamW, {}),
    (ravine.Lion, {"weight_decay": 0.1}),
    (ravine.ADOPT, {"decouple": True, "weight_decay": 0.1}),
    (ravine.Adadelta, {}),
    (ravine.Adamax, {}),
    (ravine.ASGD, {"t0": 2.0}),
    (ravine.NAdam, {}),
    (ravine.RAdam, {}),
    (ravine.Rprop, {}),
    (ravine.Adafactor, {}),
]
ALL_IDS = [cls.__name__ for cls, _ in ALL]


def _train(optimizer, params, steps, start=0):
    for step in range(start, start + steps):
        set_grads(params, step, skip_some=False)
        optimizer.step()


@pytest.mark.parametrize(("ours", "theirs", "config"), TORCH_TWINS, ids=[c[0].__name__ for c in TORCH_TWINS])
@pytest.mark.parametrize("direction", ["torch-to-ravine", "ravine-to-torch"])
def test_torch_state_dict_loads_and_continues_identically(ours, theirs, config, direction):
    source_cls, target_cls = (theirs, ours) if direction == "torch-to-ravine" else (ours, theirs)
    params = make_params()
    source = source_cls(params, foreach=False, **config)
    _train(source, params, 5)
    continued = clone_params(params)
    target = target_cls(continued, foreach=False, **config)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    # From here both must run in lockstep, bit for bit.
    assert_same_run(source, params, target, continued, 20, exact=True, grads=lambda ps, s: set_grads(ps, s + 5))


@pytest.mark.parametrize(("cls", "config"), ALL, ids=ALL_IDS)
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_round_trip_resumes_bit_identically(cls, config, foreach, tmp_path):
    params = make_params()
    original = cls(params, foreach=foreach, **config)
    _train(original, params, 7)
    torch.save(original.state_dict(), tmp_path / "opt.pt")
    loaded_sd = torch.load(tmp_path / "opt.pt", weights_only=True)
    resumed_params = clone_params(params)
    resumed = cls(resumed_params, foreach=foreach, **config)
    resumed.load_state_dict(loaded_sd)
    assert_same_run(original, params, resumed, resumed_params, 10, exact=True,
                    grads=lambda ps, s: set_grads(ps, s + 7, skip_some=False))


@pytest.mark.parametrize(("cls", "config"), ALL, ids=ALL_IDS)
def test_deepcopy_and_pickle_keep_the_optimizer_working(cls, config):
    params = make_params()
    optimizer = cls(params, **config)
    _train(optimizer, params, 3)
    for clone in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        public = {k for k in optimizer.__dict__ if not k.startswith("_")}
        assert {k for k in clone.__dict__ if not k.startswith("_")} == public
        cloned_params = clone.param_groups[0]["params"]
        _train(clone, cloned_params, 2, start=3)
        assert clone.state_dict()["state"][0].keys() == optimizer.state_dict()["state"][0].keys()


def test_adopt_clip_lambda_stays_out_of_the_state_dict(tmp_path):
    params = make_params()
    optimizer = ravine.ADOPT(params, clip_lambda=lambda step: step**0.3)
    _train(optimizer, params, 3)
    sd = optimizer.state_dict()
    assert all("clip_lambda" not in group for group in sd["param_groups"])
    torch.save(sd, tmp_path / "adopt.pt")
    torch.load(tmp_path / "adopt.pt", weights_only=True)


def test_non_tensor_step_loads():
    params = make_params()
    optimizer = ravine.Adam(params)
    _train(optimizer, params, 2)
    sd = optimizer.state_dict()
    for state in sd["state"].values():
        state["step"] = state["step"].item()
    fresh = ravine.Adam(clone_params(params))
    fresh.load_state_dict(sd)
    assert all(torch.is_tensor(s["step"]) for s in fresh.state.values())
    _train(fresh, fresh.param_groups[0]["params"], 1, start=2)


def test_loading_does_not_mutate_the_argument():
    params = make_params()
    optimizer = ravine.RMSprop(params, momentum=0.5)
    _train(optimizer, params, 2)
    sd = optimizer.state_dict()
    before = copy.deepcopy(sd)
    ravine.RMSprop(clone_params(params), momentum=0.5).load_state_dict(sd)
    assert sd["param_groups"] == before["param_groups"]
    assert sd["state"].keys() == before["state"].keys()


def test_state_dict_uses_torch_key_names():
    params = make_params()
    expected = {
        ravine.SGD(params, momentum=0.9): {"momentum_buffer"},
        ravine.Adagrad(params): {"step", "sum"},
        ravine.RMSprop(params, centered=True, momentum=0.9): {"step", "square_avg", "grad_avg", "momentum_buffer"},
        ravine.Adam(params, amsgrad=True): {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
        ravine.Lion(params): {"exp_avg"},
        ravine.ADOPT(params): {"step", "exp_avg", "exp_avg_sq"},
    }
    for optimizer, keys in expected.items():
        _train(optimizer, params, 1)
        assert set(optimizer.state_dict()["state"][0]) == keys, type(optimizer).__name__


@pytest.mark.parametrize("direction", ["torch-to-ravine", "ravine-to-torch"])
def test_muon_state_dict_loads_and_continues_identically(direction):
    source_cls, target_cls = ((torch.optim.Muon, ravine.Muon) if direction == "torch-to-ravine"
                              else (ravine.Muon, torch.optim.Muon))
    params = make_params(shapes=[(6, 4), (4, 6)])
    source = source_cls(params, lr=1e-2)
    _train(source, params, 5)
    continued = clone_params(params)
    target = target_cls(continued, lr=1e-2)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    assert_same_run(source, params, target, continued, 10, exact=True, grads=lambda ps, s: set_grads(ps, s + 5))


@pytest.mark.parametrize("direction", ["torch-to-ravine", "ravine-to-torch"])
def test_sparse_adam_state_dict_loads_and_continues_identically(direction):
    pairs = (torch.optim.SparseAdam, ravine.SparseAdam)
    source_cls, target_cls = pairs if direction == "torch-to-ravine" else pairs[::-1]

    def sparse_grads(params, step):
        rows = torch.tensor([[step % 6, 5]])
        for p in params:
            p.grad = torch.sparse_coo_tensor(rows, p.detach()[rows[0]] * 0.5 + 0.1, p.shape)

    params = make_params(shapes=[(6, 3)])
    source = source_cls(params, lr=0.05)
    for step in range(4):
        sparse_grads(params, step)
        source.step()
    continued = clone_params(params)
    target = target_cls(continued, lr=0.05)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    assert_same_run(source, params, target, continued, 6, exact=True, grads=lambda ps, s: sparse_grads(ps, s + 4))


@pytest.mark.parametrize("direction", ["torch-to-ravine", "ravine-to-torch"])
def test_lbfgs_state_dict_loads_and_continues_identically(direction):
    pairs = (torch.optim.LBFGS, ravine.LBFGS)
    source_cls, target_cls = pairs if direction == "torch-to-ravine" else pairs[::-1]

    def run(optimizer, w, steps):
        def closure():
            optimizer.zero_grad()
            loss = ((w - 1.0) ** 4).sum() + (w**2).sum()
            loss.backward()
            return loss

        for _ in range(steps):
            optimizer.step(closure)

    w = torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    source = source_cls([w], lr=0.5, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    run(source, w, 2)
    w2 = w.detach().clone().requires_grad_()
    target = target_cls([w2], lr=0.5, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    run(source, w, 3)
    run(target, w2, 3)
    assert torch.equal(w, w2)
    assert source.state[w]["n_iter"] == target.state[w2]["n_iter"]


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(("cls", "config"), ALL, ids=ALL_IDS)
def test_a_state_dict_comes_out_of_a_load_exactly_as_it_went_in(cls, config):
    """Loading used to add torch's ``differentiable`` flag to every group: save → load → save differed."""
    params = make_params()
    optimizer = cls(params, **config)
    _train(optimizer, params, 3)
    saved = copy.deepcopy(optimizer.state_dict())
    fresh = cls(clone_params(params), **config)
    fresh.load_state_dict(copy.deepcopy(saved))
    assert _same(fresh.state_dict(), saved)


@pytest.mark.parametrize(("ours", "theirs", "config"), TORCH_TWINS, ids=[c[0].__name__ for c in TORCH_TWINS])
def test_torch_state_dicts_come_out_of_a_ravine_load_unchanged(ours, theirs, config):
    """ravine-only options (``skip_nonfinite``, ``eps_root``, …) are read through the defaults, not added."""
    params = make_params()
    reference = theirs(params, **config)
    _train(reference, params, 3)
    saved = copy.deepcopy(reference.state_dict())
    candidate = ours(clone_params(params), **config)
    candidate.load_state_dict(copy.deepcopy(saved))
    assert _same(candidate.state_dict(), saved)
    _train(candidate, candidate.param_groups[0]["params"], 1)  # and it still steps

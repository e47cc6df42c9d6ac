"""ravine against torch.optim: bit-identical per-tensor path, multi-tensor path within 1e-6 relative.

Every flag combination torch supports is run for 200 steps on float32 and float64, with steps where some or
all gradients are None, and every parameter and state tensor is compared after every step.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_same_run, clone_params, flag_grid, make_params, run_against

import ravine

STEPS = 200


def _sgd_configs():
    for c in flag_grid(momentum=[0, 0.9], dampening=[0, 0.5], nesterov=[False, True],
                       weight_decay=[0, 0.1], maximize=[False, True]):
        if c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0):
            continue
        yield {"lr": 1e-2, **c}


def _adagrad_configs():
    for c in flag_grid(lr_decay=[0, 0.5], weight_decay=[0, 0.1], initial_accumulator_value=[0, 0.1],
                       maximize=[False, True]):
        yield {"lr": 0.1, **c}


def _rmsprop_configs():
    for c in flag_grid(centered=[False, True], momentum=[0, 0.5], weight_decay=[0, 0.1],
                       maximize=[False, True]):
        yield {"lr": 1e-2, **c}


def _adam_configs():
    for c in flag_grid(amsgrad=[False, True], weight_decay=[0, 0.1], maximize=[False, True]):
        yield {"lr": 1e-2, "betas": (0.8, 0.9), **c}


CASES = [
    (ravine.SGD, torch.optim.SGD, list(_sgd_configs())),
    (ravine.Adagrad, torch.optim.Adagrad, list(_adagrad_configs())),
    (ravine.RMSprop, torch.optim.RMSprop, list(_rmsprop_configs())),
    (ravine.Adam, torch.optim.Adam, list(_adam_configs())),
    (ravine.AdamW, torch.optim.AdamW, list(_adam_configs())),
]
PARAMS = [
    pytest.param(ours, theirs, config, id=f"{ours.__name__}-{i}")
    for ours, theirs, configs in CASES
    for i, config in enumerate(configs)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("ours", "theirs", "config"), PARAMS)
def test_per_tensor_path_is_bit_identical_to_torch(ours, theirs, config, dtype):
    run_against(ours, theirs, config, dtype=dtype, flags={"foreach": False}, steps=STEPS, exact=True)


@pytest.mark.parametrize(("ours", "theirs", "config"), PARAMS)
def test_multi_tensor_path_matches_torch_foreach(ours, theirs, config):
    run_against(ours, theirs, config, flags={"foreach": True}, steps=STEPS, exact=False, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("ours", [ravine.SGD, ravine.Adagrad, ravine.RMSprop, ravine.Adam, ravine.AdamW])
def test_complex_parameters_match_torch(ours):
    theirs = getattr(torch.optim, ours.__name__)
    g = torch.Generator().manual_seed(3)
    ref_params = [torch.randn(6, 4, dtype=torch.complex64, generator=g).requires_grad_(),
                  torch.randn(5, generator=g).requires_grad_()]
    cand_params = clone_params(ref_params)
    config = {"momentum": 0.9} if ours is ravine.SGD else {}
    for foreach in (False, True):
        reference = theirs(clone_params(ref_params), foreach=foreach, **config)
        candidate = ours(clone_params(cand_params), foreach=foreach, **config)
        rp, cp = reference.param_groups[0]["params"], candidate.param_groups[0]["params"]
        assert_same_run(reference, rp, candidate, cp, 20, exact=False, rtol=1e-6, atol=1e-7)


# torch's Adam refuses a Tensor lr with foreach=True (tests/optim_info.py checks ravine's does too)
@pytest.mark.parametrize(("cls", "foreach"), [(ravine.Adam, False), (ravine.RMSprop, True)],
                         ids=["Adam-per-tensor", "RMSprop-multi-tensor"])
def test_tensor_lr_matches_float_lr(cls, foreach):
    a_params = make_params()
    b_params = clone_params(a_params)
    a = cls(a_params, lr=1e-3, foreach=foreach)
    b = cls(b_params, lr=torch.tensor(1e-3), foreach=foreach)
    assert_same_run(a, a_params, b, b_params, 10, exact=False, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize("ours", [ravine.SGD, ravine.Adagrad])
def test_sparse_gradients_match_torch(ours):
    theirs = getattr(torch.optim, ours.__name__)
    ref = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    cand = ref.detach().clone().requires_grad_()
    reference, candidate = theirs([ref], lr=0.1), ours([cand], lr=0.1)
    indices = torch.tensor([[0, 0, 4, 7]])  # duplicated index: uncoalesced, as torch's test sends
    for step in range(20):
        values = torch.full((4, 3), 0.1 * (step + 1), dtype=torch.float64) + ref.detach()[indices[0]]
        for p in (ref, cand):
            p.grad = torch.sparse_coo_tensor(indices, values, (10, 3))
        reference.step()
        candidate.step()
        assert torch.equal(ref, cand)


def test_sparse_gradients_are_rejected_like_torch():
    p = torch.randn(4, 2, requires_grad=True)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 2), (4, 2))
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        ravine.Adam([p]).step()
    with pytest.raises(RuntimeError, match="weight_decay option is not compatible with sparse gradients"):
        ravine.Adagrad([p], weight_decay=0.1).step()

"""Property-based fuzzing of every optimizer (hypothesis).

Profiles: ``ci`` (default, 25 examples per property, derandomised) and ``thorough``
(``RAVINE_HYPOTHESIS=thorough python -m pytest tests/test_fuzz.py``, 500 examples).
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ravine

ALGORITHMS = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Lion", "ADOPT", "Adadelta", "Adamax", "ASGD", "NAdam",
              "RAdam", "Rprop"]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64]

unit = st.floats(0.0, 0.999)
small = st.floats(0.0, 0.5)


@st.composite
def configs(draw, algorithm: str | None = None):
    """A valid configuration of one algorithm: hyperparameters in range, flags in any combination."""
    name = algorithm or draw(st.sampled_from(ALGORITHMS))
    lr = draw(st.floats(1e-5, 0.1))
    wd = draw(st.sampled_from([0.0, 1e-3, 0.1]))
    maximize = draw(st.booleans())
    if name == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
        nesterov = momentum > 0 and draw(st.booleans())
        dampening = 0.0 if nesterov else draw(small)
        kw = dict(momentum=momentum, nesterov=nesterov, dampening=dampening)
    elif name == "Adagrad":
        kw = dict(lr_decay=draw(small), initial_accumulator_value=draw(small), eps=draw(st.floats(1e-10, 1e-3)))
    elif name == "RMSprop":
        # alpha < 0.5 with centered=True makes the variance estimate ~0 and the step g/eps (as in torch)
        kw = dict(alpha=draw(st.floats(0.5, 0.999)), centered=draw(st.booleans()),
                  momentum=draw(st.sampled_from([0.0, 0.5])), eps=draw(st.floats(1e-8, 1e-3)),
                  bias_correction=draw(st.booleans()))
    elif name in ("Adam", "AdamW"):
        kw = dict(betas=(draw(unit), draw(unit)), amsgrad=draw(st.booleans()), eps=draw(st.floats(1e-8, 1e-3)),
                  eps_root=draw(st.sampled_from([0.0, 1e-8])))
    elif name == "Lion":
        kw = dict(betas=(draw(unit), draw(unit)))
    elif name == "Adadelta":
        kw = dict(rho=draw(unit), eps=draw(st.floats(1e-8, 1e-3)))
    elif name == "Adamax":
        kw = dict(betas=(draw(unit), draw(unit)), eps=draw(st.floats(1e-8, 1e-3)))
    elif name == "ASGD":
        kw = dict(lambd=draw(st.sampled_from([0.0, 1e-4, 1e-2])), alpha=draw(st.floats(0.5, 1.0)),
                  t0=draw(st.sampled_from([1.0, 2.0, 1e6])))
    elif name == "NAdam":
        kw = dict(betas=(draw(unit), draw(unit)), eps=draw(st.floats(1e-8, 1e-3)),
                  momentum_decay=draw(st.sampled_from([0.0, 4e-3, 0.1])),
                  decoupled_weight_decay=draw(st.booleans()))
    elif name == "RAdam":
        kw = dict(betas=(draw(unit), draw(unit)), eps=draw(st.floats(1e-8, 1e-3)),
                  decoupled_weight_decay=draw(st.booleans()))
    elif name == "Rprop":
        wd = 0.0  # Rprop has no weight decay
        kw = dict(etas=(draw(st.floats(0.1, 0.9)), draw(st.floats(1.1, 2.0))),
                  step_sizes=(draw(st.sampled_from([1e-6, 1e-4])), draw(st.sampled_from([1.0, 50.0]))))
    else:
        kw = dict(betas=(draw(unit), draw(unit)), eps=draw(st.floats(1e-8, 1e-3)), decouple=draw(st.booleans()))
    decay = {} if name == "Rprop" else {"weight_decay": wd}
    return name, dict(lr=lr, maximize=maximize, **decay, **kw)


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def _params(shape_list, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in shape_list:
        real = torch.randn((*shape, 2) if dtype.is_complex else shape, generator=g, dtype=torch.float64)
        value = torch.view_as_complex(real.contiguous()) if dtype.is_complex else real
        out.append(value.to(dtype).requires_grad_())
    return out


def _run(name, config, params, steps, seed, **path):
    optimizer = getattr(ravine, name)(params, **config, **path)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        for p in params:
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            noise = torch.complex(noise, noise.flip(-1) if noise.dim() else noise) if p.is_complex() else noise
            p.grad = (0.5 * p.detach().to(noise.dtype) + noise).to(p.dtype)
        optimizer.step()
    return optimizer


def _tolerance(dtype):
    return {torch.float16: 1e-2, torch.bfloat16: 2e-2}.get(dtype, 1e-5)


@given(config=configs(), shape_list=st.lists(shapes, min_size=1, max_size=4), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16))
def test_random_valid_inputs_give_finite_results_and_paths_agree(config, shape_list, dtype, seed):
    name, kwargs = config
    a = _params(shape_list, dtype, seed)
    b = [p.detach().clone().requires_grad_() for p in a]
    _run(name, kwargs, a, 3, seed, foreach=False)
    _run(name, kwargs, b, 3, seed, foreach=True)
    for x, y in zip(a, b, strict=True):
        assert torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()
        tol = _tolerance(dtype)
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)


# Fused: float32 with fixed branches per algorithm (the values are drawn), so the graphs are the same few
# compiled by the rest of the suite; a fixed 8-element parameter keeps the flat buffer longer than one element.
FUSED_FLAGS = {"SGD": {"momentum": 0.9}, "RMSprop": {"centered": True}, "Adam": {"amsgrad": True}}


@given(name=st.sampled_from(ALGORITHMS), lr=st.floats(1e-5, 0.1), wd=st.floats(1e-4, 0.1),
       shape_list=st.lists(shapes, min_size=0, max_size=3), seed=st.integers(0, 2**16))
def test_fused_agrees_with_the_per_tensor_path(name, lr, wd, shape_list, seed):
    decay = {} if name == "Rprop" else {"weight_decay": wd}  # Rprop has no weight decay
    kwargs = dict(lr=lr, **decay, **FUSED_FLAGS.get(name, {}))
    a = _params([(8,), *shape_list], torch.float32, seed)
    b = [p.detach().clone().requires_grad_() for p in a]
    _run(name, kwargs, a, 3, seed, foreach=False)
    _run(name, kwargs, b, 3, seed, fused=True)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)


INVALID = st.one_of(
    st.tuples(st.just("lr"), st.floats(max_value=-1e-12, allow_infinity=False)),
    st.tuples(st.just("weight_decay"), st.floats(max_value=-1e-12, allow_infinity=False)),
    st.tuples(st.just("betas"), st.tuples(st.floats(1.0, 10.0), unit)),
    st.tuples(st.just("betas"), st.tuples(unit, st.floats(max_value=-1e-12, allow_infinity=False))),
)


@given(name=st.sampled_from(["Adam", "AdamW", "Lion", "ADOPT"]), invalid=INVALID)
def test_invalid_hyperparameters_raise_value_error_naming_them(name, invalid):
    argument, value = invalid
    with pytest.raises(ValueError) as info:
        getattr(ravine, name)([torch.zeros(2, requires_grad=True)], **{argument: value})
    message = str(info.value)
    assert re.search(r"\(betas\[[01]\]|\(lr |\(weight_decay ", message) and "Invalid" in message


@given(config=configs(), bad=st.sampled_from([math.nan, math.inf, -math.inf]), seed=st.integers(0, 2**16))
def test_nonfinite_gradients_with_skip_nonfinite_change_nothing(config, bad, seed):
    name, kwargs = config
    params = _params([(3, 2), (4,)], torch.float32, seed)
    optimizer = _run(name, {**kwargs, "skip_nonfinite": True}, params, 2, seed)
    before = [p.detach().clone() for p in params]
    state = {i: {k: v.clone() for k, v in optimizer.state[p].items()} for i, p in enumerate(params)}
    params[1].grad = torch.full_like(params[1], bad)
    params[0].grad = torch.randn_like(params[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    for i, p in enumerate(params):
        assert all(torch.equal(v, state[i][k]) for k, v in optimizer.state[p].items())
    assert optimizer.skipped_steps == 1

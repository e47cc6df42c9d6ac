"""Compact state: blockwise 8-bit (state_dtype="int8") and stochastically rounded bfloat16 (state_dtype=bf16)."""

from __future__ import annotations

import io
import math

import pytest
import torch

import ravine
from ravine.engine import compact
from ravine.memory import state_bytes
from ravine.registry import ALGORITHMS

WITH_STATE = sorted(name for name, cls in ALGORITHMS.items()
                    if cls.kind in ("elementwise", "tensorwise")
                    # sparse-only; routed groups (own test); ASGD and Schedule-Free SGD keep only weights-like
                    # state, which stays precise
                    and cls.__name__ not in ("SparseAdam", "MuonWithAuxAdam", "ASGD", "ScheduleFreeSGD"))
OPTIONS = {"sgd": {"momentum": 0.9}}  # plain SGD keeps no state
SHAPES = [(40, 30), (257,), (3,), ()]  # several blocks, a partial last block, tiny and 0-d tensors
MATRICES = [(40, 30), (16, 8), (3, 3)]  # Muon's


def _params(seed: int = 0, dtype: torch.dtype = torch.float32, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(dtype).requires_grad_() for s in shapes]


def _train(cls, params, steps=5, seed=1, **options):
    optimizer = cls(params, lr=1e-2, **options)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = (torch.randn(p.shape, generator=g) + 0.3).to(p.dtype)
        optimizer.step()
    return optimizer


# ---- the 8-bit code -------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonnegative", [False, True])
def test_quantisation_error_is_bounded_per_block(nonnegative):
    g = torch.Generator().manual_seed(0)
    # values over many orders of magnitude, blocks of very different scales, one all-zero block
    x = torch.randn(8 * compact.BLOCK + 37, generator=g) * torch.logspace(-6, 3, 8 * compact.BLOCK + 37)
    x[compact.BLOCK: 2 * compact.BLOCK] = 0
    if nonnegative:
        x = x * x
    codes, absmax = compact.quantize(x, nonnegative=nonnegative)
    assert codes.dtype == (torch.uint8 if nonnegative else torch.int8)
    assert codes.shape == (9, compact.BLOCK) and absmax.shape == (9,)
    y = compact.dequantize(codes, absmax, x.shape)
    block_max = absmax.repeat_interleave(compact.BLOCK)[: x.numel()]
    if nonnegative:  # the square root is coded: 4 mantissa bits, down to 2^-16 of the block's largest root
        error, size = (y.sqrt() - x.sqrt()).abs(), x.sqrt()
        assert bool((error <= size * 2**-5 + block_max * 2**-15.5).all())
    else:  # 3 mantissa bits, down to 2^-16 of the block maximum
        error, size = (y - x).abs(), x.abs()
        assert bool((error <= size * 2**-4 + block_max * 2**-15.5).all())
    assert bool((y[compact.BLOCK: 2 * compact.BLOCK] == 0).all())
    assert torch.equal(torch.sign(y[y != 0]), torch.sign(x[y != 0]))


@pytest.mark.parametrize("nonnegative", [False, True])
def test_every_code_decodes_to_a_value_that_encodes_back_to_it(nonnegative):
    dtype = torch.uint8 if nonnegative else torch.int8
    codes = torch.arange(0, 256) if nonnegative else torch.arange(-127, 128)
    codes = codes.to(dtype)
    padded = torch.nn.functional.pad(codes, (0, compact.BLOCK - codes.numel())).view(1, -1)
    values = compact.dequantize(padded, torch.tensor([3.0]), (codes.numel(),))
    assert torch.equal(compact.quantize(values, nonnegative=nonnegative)[0].view(-1)[: codes.numel()], codes)
    assert bool((values.diff() > 0).all())  # codes are ordered like the values they stand for


def test_int8_adamw_state_is_at_most_2_1_bytes_per_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.Linear(1024, 256))
    optimizer = ravine.AdamW(model.parameters(), state_dtype="int8")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    count = sum(p.numel() for p in model.parameters())
    assert state_bytes(optimizer) / count <= 2.1
    state = optimizer.state[model[0].weight]
    assert state["exp_avg"].dtype == torch.int8 and state["exp_avg_sq"].dtype == torch.uint8
    assert state["exp_avg_absmax"].dtype == torch.float32


# ---- every optimizer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WITH_STATE)
def test_int8_state_paths_agree_and_follow_float32(name):
    cls, options = ALGORITHMS[name], OPTIONS.get(name, {})
    shapes = MATRICES if cls.__name__ == "Muon" else SHAPES
    start = [p.detach().clone() for p in _params(shapes=shapes)]
    reference = _params(shapes=shapes)
    _train(cls, reference, **options)
    per_tensor = _params(shapes=shapes)
    optimizer = _train(cls, per_tensor, state_dtype="int8", foreach=False, **options)
    stored = [v for s in optimizer.state.values() for k, v in s.items()
              if torch.is_tensor(v) and v.dim() > 0 and not k.endswith("_absmax") and k not in cls.precise_state]
    assert stored and all(not v.is_floating_point() or v.shape != (40, 30) for v in stored)
    if "multi-tensor" in cls.supported_paths():
        multi = _params(shapes=shapes)
        _train(cls, multi, state_dtype="int8", foreach=True, **options)
        for a, b in zip(per_tensor, multi, strict=True):
            assert torch.equal(a, b)
    for s, a, b in zip(start, per_tensor, reference, strict=True):
        moved, error = (b - s).norm(), (a - b).norm()
        assert error <= 0.2 * moved + 1e-6, f"{name}: 8-bit state moved {a - s} where float32 moved {b - s}"


@pytest.mark.parametrize("state_dtype", ["int8", torch.bfloat16])
@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}],
                         ids=["per-tensor", "multi-tensor", "fused"])
def test_compact_state_resumes_bit_for_bit(state_dtype, path):
    uninterrupted = _params()
    _train(ravine.AdamW, uninterrupted, steps=8, state_dtype=state_dtype, **path)
    first = _params()
    optimizer = _train(ravine.AdamW, first, steps=4, state_dtype=state_dtype, **path)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    resumed = [p.detach().clone().requires_grad_() for p in first]
    again = ravine.AdamW(resumed, lr=1e-2, state_dtype=state_dtype, **path)
    again.load_state_dict(torch.load(buffer))
    assert again.state[resumed[0]]["exp_avg"].dtype == optimizer.state[first[0]]["exp_avg"].dtype
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # the gradients of steps 1-4, which the uninterrupted run consumed
        for p in resumed:
            torch.randn(p.shape, generator=g)
    for _ in range(4):
        for p in resumed:
            p.grad = torch.randn(p.shape, generator=g) + 0.3
        again.step()
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("state_dtype", ["int8", torch.bfloat16])
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_compact_state_resumes_bit_for_bit_through_a_distributed_checkpoint(state_dtype, tmp_path):
    # torch.distributed.checkpoint in one process: get_state_dict flattens the codes and block maxima under
    # the parameters' names, dcp.save writes them, dcp.load + set_state_dict put them back exactly.
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    def model_and_optimizer():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
        return model, ravine.AdamW(model.parameters(), lr=1e-2, state_dtype=state_dtype)

    def train(model, optimizer, steps):
        for step in steps:
            x = torch.randn(8, 24, generator=torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()

    model, optimizer = model_and_optimizer()
    train(model, optimizer, range(6))
    model_sd, optim_sd = get_state_dict(model, optimizer)
    assert any(key.endswith("exp_avg_absmax") for key in optim_sd["state"]["0.weight"]) == (state_dtype == "int8")
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp_path / "ckpt"))
    train(model, optimizer, range(6, 12))
    fresh_model, fresh = model_and_optimizer()
    model_sd, optim_sd = get_state_dict(fresh_model, fresh)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(tmp_path / "ckpt"))
    set_state_dict(fresh_model, fresh, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train(fresh_model, fresh, range(6, 12))
    for a, b in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(optimizer.state.values(), fresh.state.values(), strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_state_dtype_is_a_group_option_saved_with_the_checkpoint_and_switchable_between_steps():
    params = _params()
    plain = _train(ravine.Adam, params)
    # as every hyperparameter in torch, the checkpoint's value wins over the constructor's
    other = [p.detach().clone().requires_grad_() for p in params]
    loaded = ravine.Adam(other, state_dtype="int8")
    loaded.load_state_dict(plain.state_dict())
    assert loaded.state[other[0]]["exp_avg"].dtype == torch.float32
    # switching a group to 8-bit state converts its state at the next step
    before = plain.state[params[0]]["exp_avg"].clone()
    plain.param_groups[0]["state_dtype"] = "int8"
    for p in params:
        p.grad = torch.zeros_like(p)
    plain.step()
    state = plain.state[params[0]]
    assert state["exp_avg"].dtype == torch.int8
    decoded = compact.dequantize(state["exp_avg"], state["exp_avg_absmax"], (40, 30))
    torch.testing.assert_close(decoded, before * 0.9, rtol=2**-4, atol=1e-4)
    # an 8-bit checkpoint loads as 8-bit into an optimizer built without state_dtype
    again = ravine.Adam([p.detach().clone().requires_grad_() for p in params])
    again.load_state_dict(plain.state_dict())
    restored = again.state[again.param_groups[0]["params"][0]]
    assert torch.equal(restored["exp_avg"], state["exp_avg"])
    assert torch.equal(restored["exp_avg_absmax"], state["exp_avg_absmax"])


def _decoded(state: dict, key: str, shape) -> torch.Tensor:
    if compact.is_quantized(state, key):
        return compact.dequantize(state[key], state[key + compact.ABSMAX], shape)
    return state[key].float()


STORAGES = [None, "int8", torch.bfloat16]


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}],
                         ids=["per-tensor", "multi-tensor", "fused"])
@pytest.mark.parametrize(("first", "second"), [(a, b) for a in STORAGES for b in STORAGES if a is not b],
                         ids=lambda s: str(s).removeprefix("torch."))
def test_changing_state_dtype_between_steps_converts_the_state(first, second, path):
    # Every direction, on every path: the next step decodes the old storage, and stores in the new one only
    # (no block maxima left behind, the fused path's flat buffers rebuilt). Zero gradients make the step
    # m ← 0.9·m, so the converted moment can be checked against the one before the change.
    params = _params()
    optimizer = _train(ravine.AdamW, params, steps=3, state_dtype=first, **path)
    before = [_decoded(optimizer.state[p], "exp_avg", p.shape) for p in params]
    optimizer.param_groups[0]["state_dtype"] = second
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    fresh = _train(ravine.AdamW, _params(), steps=1, state_dtype=second, **path)
    # int8: half a code step; bfloat16: one ulp for each of two stochastic roundings (conversion, step)
    tolerance = {None: 1e-6, "int8": 2**-4, torch.bfloat16: 2**-6}[second]
    for p, q, m in zip(params, fresh.param_groups[0]["params"], before, strict=True):
        state, expected = optimizer.state[p], fresh.state[q]
        assert {k: (v.dtype, v.shape) for k, v in state.items()} == {
            k: (v.dtype, v.shape) for k, v in expected.items()}
        torch.testing.assert_close(_decoded(state, "exp_avg", p.shape), m * 0.9, rtol=tolerance, atol=1e-4)
    optimizer.step()  # and it goes on stepping in the new storage
    assert all(torch.isfinite(p).all() for p in params)
    assert optimizer.param_groups[0]["state_dtype"] == compact_name(second)  # a dtype set by hand: its name


def compact_name(state_dtype) -> str | None:
    return None if state_dtype is None else str(state_dtype).removeprefix("torch.")


def test_a_bad_state_dtype_set_between_steps_is_refused_by_name():
    params = _params()
    optimizer = _train(ravine.AdamW, params, steps=1)
    optimizer.param_groups[0]["state_dtype"] = "bf16"
    with pytest.raises(ValueError, match="Invalid state_dtype: 'bf16'"):
        optimizer.step()


def test_fused_8bit_state_in_chunks_and_a_partial_last_block_matches_the_eager_path(monkeypatch):
    # The fused 8-bit step runs whole blocks in chunks (here of 512 elements, instead of 1 M) and a tensor's
    # partial last block in a call of its own; a tensor that fills its blocks exactly has no such call.
    from ravine.engine import fused as fused_module

    monkeypatch.setattr(fused_module, "CHUNK", 512)
    shapes = [(1300,), (4, 256), (100,)]  # chunks + tail, exact blocks, tail only
    results = []
    for path in ({"fused": True}, {"foreach": False}):
        params = _params(shapes=shapes)
        optimizer = _train(ravine.AdamW, params, steps=4, state_dtype="int8", **path)
        results.append((params, optimizer))
    (fused, fused_opt), (eager, eager_opt) = results
    for p, q in zip(fused, eager, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq"):
            a = _decoded(fused_opt.state[p], key, p.shape)
            b = _decoded(eager_opt.state[q], key, q.shape)
            torch.testing.assert_close(a, b, rtol=2**-3, atol=1e-6)  # at most a code apart


def test_loading_compact_state_copies_it_out_of_the_checkpoint():
    p = torch.randn(300, requires_grad=True)
    optimizer = ravine.ScheduleFreeAdamW([p], lr=1e-2, state_dtype="int8")  # z stays full precision
    optimizer.train()
    p.grad = torch.randn(300)
    optimizer.step()
    checkpoint = optimizer.state_dict()
    before = {k: v.clone() for k, v in checkpoint["state"][0].items()}
    q = p.detach().clone().requires_grad_()
    resumed = ravine.ScheduleFreeAdamW([q], lr=1e-2, state_dtype="int8")
    resumed.train()
    resumed.load_state_dict(checkpoint)
    q.grad = torch.randn(300)
    resumed.step()
    for key, value in before.items():
        assert torch.equal(checkpoint["state"][0][key], value), key


def test_int8_state_refuses_complex_parameters_and_differentiable_with_the_option_named():
    p = torch.randn(4, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.randn_like(p)
    with pytest.raises(ValueError, match=r"state_dtype='int8'.*complex parameters"):
        ravine.Adam([p], state_dtype="int8").step()
    with pytest.raises(ValueError, match=r"differentiable=True.*state_dtype"):
        ravine.Adam([torch.zeros(2, requires_grad=True)], state_dtype="int8", differentiable=True)


# ---- bfloat16 state with stochastic rounding ------------------------------------------------------------
def test_stochastic_rounding_is_unbiased_and_reproducible():
    x = torch.full((200_000,), 1.0 + 2**-10)  # a quarter of the way from 1 to the next bfloat16 (1 + 2^-7)
    rounded = compact.round_stochastic(x, seed=5).float()
    assert set(rounded.unique().tolist()) == {1.0, 1.0 + 2**-7}
    assert abs(rounded.mean().item() - (1.0 + 2**-10)) < 2e-5
    assert torch.equal(compact.round_stochastic(x, seed=5), compact.round_stochastic(x, seed=5))
    assert not torch.equal(compact.round_stochastic(x, seed=5), compact.round_stochastic(x, seed=6))
    exact = torch.tensor([1.0, -2.5, 0.0])  # values a bfloat16 holds are never moved
    assert torch.equal(compact.round_stochastic(exact, seed=1).float(), exact)


def test_bfloat16_state_keeps_small_ema_updates_that_rounding_to_nearest_loses():
    # v ← β₂·v + (1 − β₂)·g² with a constant g: with β₂ = 0.999 each step's change falls below half a
    # bfloat16 ulp long before v reaches g², so rounding to nearest stalls; stochastic rounding does not.
    steps, beta2 = 4000, 0.999
    p = torch.zeros(4096, requires_grad=True)
    optimizer = ravine.Adam([p], lr=0.0, betas=(0.9, beta2), state_dtype=torch.bfloat16)
    nearest = torch.zeros(4096, dtype=torch.bfloat16)
    for _ in range(steps):
        p.grad = torch.ones(4096)
        optimizer.step()
        nearest = (nearest.float() * beta2 + (1 - beta2)).to(torch.bfloat16)
    exact = 1 - beta2**steps
    stochastic = optimizer.state[p]["exp_avg_sq"].float().mean().item()
    assert abs(stochastic - exact) / exact < 0.01
    assert abs(nearest.float().mean().item() - exact) / exact > 0.03


def test_bfloat16_state_leaves_float32_parameters_in_float32():
    p = torch.full((8,), 1.0, requires_grad=True)
    optimizer = ravine.SGD([p], lr=1e-4, momentum=0.9, state_dtype=torch.bfloat16)
    for _ in range(3):
        p.grad = torch.ones(8)
        optimizer.step()
    assert optimizer.state[p]["momentum_buffer"].dtype == torch.bfloat16
    assert p.dtype == torch.float32 and not math.isclose(p[0].item(), p[0].to(torch.bfloat16).item(), rel_tol=0,
                                                          abs_tol=0)


# ---- the fused path: two graphs for the whole file ------------------------------------------------------
@pytest.mark.parametrize("state_dtype", ["int8", torch.bfloat16])
def test_fused_compact_state_matches_the_eager_path(state_dtype):
    fused = _params()
    optimizer = _train(ravine.AdamW, fused, state_dtype=state_dtype, fused=True)
    eager = _params()
    _train(ravine.AdamW, eager, state_dtype=state_dtype, foreach=False)
    # 8-bit: the same decode and encode; bfloat16: the same distribution of rounding (the random bits follow
    # the position in the fused buffer), so agreement is to a bfloat16 ulp of the state, not to the bit
    tolerance = 1e-6 if state_dtype == "int8" else 2e-3
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    state = optimizer.state[fused[0]]
    expected = torch.int8 if state_dtype == "int8" else torch.bfloat16
    assert state["exp_avg"].dtype == expected

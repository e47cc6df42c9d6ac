"""What the engine promises every algorithm: its kind of math decides its paths, one compute-dtype rule on every
path, the same operations on the multi-tensor and fused stand-ins, one registry and one state-memory count."""

from __future__ import annotations

import math
import random

import pytest
import torch
from helpers import clone_params, make_params, set_grads

import ravine
from ravine.engine import PATHS_BY_KIND
from ravine.engine.tensorlist import TensorList
from ravine.engine.tracing import FusedTensor
from ravine.registry import ALGORITHMS

ELEMENTWISE = [cls for cls in ALGORITHMS.values() if cls.kind == "elementwise"]


def _methods(cls) -> set[str]:
    public = {name for name in dir(cls) if not name.startswith("_") or name == "__neg__"}
    return public - {"t", "tensors", "layout"}


def test_the_multi_tensor_and_fused_stand_ins_offer_the_same_operations():
    assert _methods(TensorList) == _methods(FusedTensor)


def test_every_algorithm_declares_a_kind_and_its_paths():
    kinds = {name: cls.kind for name, cls in ALGORITHMS.items()}
    assert kinds["adafactor"] == kinds["muon"] == "tensorwise"
    assert kinds["sparseadam"] == "sparse" and kinds["lbfgs"] == "closure"
    assert all(kind in PATHS_BY_KIND for kind in kinds.values())
    assert ravine.Adam.supported_paths() == ("per-tensor", "multi-tensor", "fused")


def test_a_path_refused_for_a_later_param_group_too():
    optimizer = ravine.Muon([torch.zeros(3, 3, requires_grad=True)])
    with pytest.raises(ValueError, match=r"Muon\(fused=True\) is not available: .*tensorwise math"):
        optimizer.add_param_group({"params": [torch.zeros(2, 2, requires_grad=True)], "fused": True})


def test_tensorwise_math_on_the_default_path_of_an_accelerator_runs_per_tensor_or_stacked(monkeypatch):
    from ravine.engine import eager

    monkeypatch.setattr(eager, "foreach_devices", lambda: ["cpu"])  # as if CPU were CUDA: foreach by default
    params = make_params(shapes=[(4, 3), (5,), (4, 3)])
    reference = torch.optim.Adafactor(clone_params(params), foreach=False)
    candidate = ravine.Adafactor(params)
    ref_params = reference.param_groups[0]["params"]
    for step in range(5):
        set_grads(ref_params, step, skip_some=False)
        set_grads(params, step, skip_some=False)
        reference.step()
        candidate.step()
    assert all(torch.equal(a, b) for a, b in zip(ref_params, params, strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("cls", [*ELEMENTWISE, ravine.Adafactor],
                         ids=lambda c: c.__name__)
def test_low_precision_parameters_compute_in_float32_on_every_eager_path(cls, dtype):
    params = make_params(dtype, shapes=[(6, 4), (5,)])
    per_tensor = cls(params, foreach=False)
    multi = cls(clone_params(params), foreach=True)
    multi_params = multi.param_groups[0]["params"]
    for step in range(3):
        set_grads(params, step, skip_some=False)
        set_grads(multi_params, step, skip_some=False)
        per_tensor.step()
        multi.step()
    floating = [v for s in per_tensor.state.values() for k, v in s.items()
                if torch.is_tensor(v) and v.dim() > 0]
    assert all(v.dtype == torch.float32 for v in floating)  # (momentum-free SGD keeps none)
    for a, b in zip(params, multi_params, strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(b, a, rtol=0, atol=float(torch.finfo(dtype).eps) * 4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
# SGD at lr 0.3: there float32 and bf16/f16 arithmetic round 27/15 of these 29 elements differently in 3 steps
@pytest.mark.parametrize(("cls", "config"), [(ravine.SGD, {"lr": 0.3}), (ravine.Adam, {"lr": 1e-2}),
                                             (ravine.NAdam, {"lr": 1e-2})], ids=["SGD", "Adam", "NAdam"])
def test_the_fused_path_follows_the_same_compute_dtype_rule(cls, config, dtype):
    """Low-precision parameters, float32 state and arithmetic on the fused path too (momentum-free SGD used to
    compute in the parameter's dtype there); the results round to the same parameters as the eager path's."""
    params = make_params(dtype, shapes=[(6, 4), (5,)])
    fused_params = clone_params(params)
    eager, fused = cls(params, foreach=False, **config), cls(fused_params, fused=True, **config)
    for step in range(3):
        for ps in (params, fused_params):
            set_grads(ps, step, skip_some=False)
        eager.step()
        fused.step()
        for a, b in zip(params, fused_params, strict=True):
            if cls is ravine.SGD:  # one multiply-add in float32, rounded once: identical
                assert torch.equal(a, b)
            else:  # float32 on both paths; fused kernels may contract a multiply-add: one ulp at most
                torch.testing.assert_close(b, a, rtol=float(torch.finfo(dtype).eps), atol=0)
    states = [v for s in fused.state.values() for k, v in s.items() if torch.is_tensor(v) and v.dim() > 0]
    assert all(v.dtype == torch.float32 for v in states)


def test_the_factory_knows_every_algorithm_by_any_spelling():
    model = torch.nn.Linear(3, 2)
    for spelling, cls in [("AdaGrad", ravine.Adagrad), ("sparse-adam", ravine.SparseAdam), ("NAdam", ravine.NAdam),
                          ("LBFGS", ravine.LBFGS), ("lookahead_RAdam", ravine.Lookahead)]:
        assert type(ravine.create_optimizer(spelling, model)) is cls
    assert set(ALGORITHMS) <= set(ravine.available_optimizers())
    assert "lookahead_lbfgs" not in ravine.available_optimizers()
    with pytest.raises(ValueError, match=r"Invalid optimizer name: 'adamm' \(choose one of: sgd, "):
        ravine.create_optimizer("adamm", model)


def test_state_bytes_counts_what_the_optimizer_holds_once():
    params = make_params(shapes=[(10, 10), (10,)])
    set_grads(params, 0, skip_some=False)
    adamw = ravine.AdamW(params)
    adamw.step()
    assert ravine.state_bytes(adamw) == 2 * 110 * 4 + 2 * 4  # two moments, one float32 step per tensor
    lion = ravine.Lion(clone_params(params))
    set_grads(lion.param_groups[0]["params"], 0, skip_some=False)
    lion.step()
    assert ravine.state_bytes(lion) == 110 * 4
    wrapped = ravine.Lookahead(ravine.SGD(clone_params(params), lr=0.1))
    set_grads(wrapped.param_groups[0]["params"], 0, skip_some=False)
    wrapped.step()
    assert ravine.state_bytes(wrapped) == 110 * 4  # the slow weights
    shared = torch.zeros(5)
    lion.state[params[0]]["alias"] = shared
    lion.state[params[1]]["alias"] = shared
    assert ravine.state_bytes(lion) == 110 * 4 + 5 * 4


def test_commands_accept_any_spelling_of_a_name():
    from ravine.registry import match_names

    known = ["SGD", "AdaGrad", "Lookahead(Adam)"]
    assert match_names(["adagrad", "sgd", "LOOKAHEAD(adam)", "adamm"], known) == (
        ["AdaGrad", "SGD", "Lookahead(Adam)"], ["adamm"])


def test_a_subclass_that_states_only_its_own_hyperparameters_takes_the_engine_flags():
    class SimpleSGD(ravine.Optimizer):
        def __init__(self, params, lr=0.01):
            super().__init__(params, dict(lr=lr))

        def update(self, p, grad, state, hp):
            p.add_(grad, alpha=-hp.lr)

    p = torch.ones(3, requires_grad=True)
    optimizer = SimpleSGD([p], lr=0.5, foreach=True, maximize=True, skip_nonfinite=True)
    group = optimizer.param_groups[0]
    assert (group["foreach"], group["maximize"], group["skip_nonfinite"]) == (True, True, True)
    p.grad = torch.ones(3)
    optimizer.step()
    assert torch.equal(p.detach(), torch.full((3,), 1.5))  # maximize: uphill
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        SimpleSGD([p], lrr=0.1)
    # torch's positional foreach still works where torch has it
    assert ravine.Adagrad([p], 0.1, 0, 0, 0, 1e-10, True).param_groups[0]["foreach"] is True


class TrustRatioSGD(ravine.Optimizer):
    """Elementwise math with whole-tensor reductions (a LARS/LAMB-style trust ratio), for the engine's tests."""

    reductions = True

    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    def update(self, p, grad, state, hp):
        ratio = p.norm().div(grad.norm().add(1e-12))  # ‖p‖/‖g‖ per tensor
        centred = grad.sub(grad.mean()).add(grad.sum().mul(1e-3))
        p.add_(centred.mul(ratio).div(grad.abs().amax().add(1.0)), alpha=-hp.lr)


@pytest.mark.parametrize("path", [{"foreach": True}, {"fused": True}], ids=["multi-tensor", "fused"])
def test_whole_tensor_reductions_agree_on_every_path(path):
    # A 0-d and a 1-element tensor are segments of their own; the larger ones span whole blocks of the fused
    # reduction, start on a block boundary (190 + 66 = 256) and end inside one.
    shapes = [(7, 5), (5,), (), (3, 4, 2), (1,), (190,), (300, 7), (256,), (513,)]
    params = make_params(shapes=shapes)
    other = clone_params(params)
    reference, candidate = TrustRatioSGD(params, foreach=False), TrustRatioSGD(other, **path)
    for step in range(5):
        set_grads(params, step, skip_some=False)
        set_grads(other, step, skip_some=False)
        reference.step()
        candidate.step()
        for a, b in zip(params, other, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    if path.get("fused"):
        assert candidate._fused.flat_groups  # it really ran on one flat buffer


def test_a_reduction_in_a_fused_step_without_the_declaration_says_what_to_declare():
    class Undeclared(TrustRatioSGD):
        reductions = False

    params = make_params(shapes=[(4,), (3,)])
    set_grads(params, 0, skip_some=False)
    with pytest.raises(Exception, match="declare `reductions = True`"):
        Undeclared(params, fused=True).step()



PATH_FLAGS = [{"foreach": False}, {"foreach": True}, {"fused": True}, {"differentiable": True}]


@pytest.mark.parametrize("flags", PATH_FLAGS, ids=["per-tensor", "multi-tensor", "fused", "differentiable"])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)], ids=["0-d", "(1,)", "(1, 1)"])
def test_a_tensor_lr_of_any_one_element_shape_works_on_every_path(shape, flags):
    """(1, 1) used to fail inside the compiled step with a fake-tensor broadcast error."""
    params = [p.double().detach().requires_grad_() for p in make_params(shapes=[(5,), (2, 3)])]
    work = [p.clone() for p in params] if flags.get("differentiable") else params
    other = [p.detach().clone().requires_grad_() for p in params]
    candidate = ravine.SGD(work, lr=torch.full(shape, 0.1, dtype=torch.float64), momentum=0.9, **flags)
    reference = ravine.SGD(other, lr=0.1, momentum=0.9, foreach=False)
    for step in range(3):
        for p in (*work, *other):
            p.grad = torch.full_like(p, 0.5 * (step + 1))
        candidate.step()
        reference.step()
    for a, b in zip(work, other, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-12)  # fused may contract an FMA


def test_fused_segment_reductions_match_each_tensors_own_sum_and_max():
    """The row layout (each tensor from a row boundary of a padded buffer) over 200 random layouts: empty,
    one-element, row-sized and row-straddling tensors in any order; the padding holds values that must not
    count."""
    from ravine.engine.flat import BLOCK, padded_numels, segment_layout, whole_layout

    rng = random.Random(0)
    sizes = [0, 1, 3, 100, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK - 1, 2 * BLOCK, 700, 1500]
    for _ in range(200):
        numels = [rng.choice(sizes) for _ in range(rng.randint(1, 8))]
        if sum(numels) == 0:
            continue
        pieces = [torch.randn(n, dtype=torch.float64) for n in numels]
        buffer = torch.full((sum(padded_numels(numels)),), 1e6, dtype=torch.float64)  # padding: large
        start = 0
        for piece, length in zip(pieces, padded_numels(numels), strict=True):
            buffer[start:start + piece.numel()] = piece
            start += length
        rows = buffer.view(-1, BLOCK)
        flat = FusedTensor(rows, segment_layout(numels, rows.device))
        sums, maxima = flat._segment_reduce(rows, "sum"), flat._segment_reduce(rows, "max")
        for i, piece in enumerate(pieces):
            torch.testing.assert_close(sums[i], piece.sum(), rtol=1e-12, atol=1e-12)
            assert maxima[i] == (piece.max() if piece.numel() else -math.inf), (numels, i)
        for piece in pieces:  # one tensor, unpadded (the one-tensor-at-a-time step)
            alone = FusedTensor(piece, whole_layout(piece.numel(), piece.device))
            torch.testing.assert_close(alone._segment_reduce(piece, "sum"), piece.sum(), rtol=1e-12, atol=1e-12)
            assert alone._segment_reduce(piece, "max").max() == (piece.max() if piece.numel() else -math.inf)


def test_ddp_split_is_for_whole_tensor_math_under_torch_distributed():
    # ddp_split=True updates every world-th matrix on each rank and broadcasts (tests/test_distributed.py runs
    # it under DDP); alone it says what it needs, and elementwise math has nothing to split
    matrix = torch.nn.Parameter(torch.randn(8, 4))
    matrix.grad = torch.randn(8, 4)
    optimizer = ravine.Muon([matrix], lr=0.02, ddp_split=True)
    with pytest.raises(RuntimeError, match=r"ddp_split=True .* torch.distributed, which is not initialised"):
        optimizer.step()
    with pytest.raises(ValueError, match=r"AdamW\(ddp_split=True\) .* elementwise math"):
        ravine.AdamW([matrix], ddp_split=True)

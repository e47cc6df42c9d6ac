"""The ten algorithms torch.optim has beyond the first five, against torch.optim itself.

Per-tensor path bit-identical to torch's ``foreach=False`` over 200 steps on float32 and float64 for every flag
combination torch supports; multi-tensor within 1e-6 of torch's foreach path (or of its only path); fused,
where the math is elementwise, within 1e-6 of the per-tensor path. Muon, SparseAdam and LBFGS, which torch
runs differently, have tests of their own below.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_same_run, clone_params, flag_grid, make_params, run_against, set_grads

import ravine

STEPS = 200


def _adadelta():
    for c in flag_grid(weight_decay=[0, 0.1], maximize=[False, True], rho=[0.9, 0.5]):
        yield {"lr": 0.5, **c}


def _adamax():
    for c in flag_grid(weight_decay=[0, 0.1], maximize=[False, True]):
        yield {"lr": 1e-2, "betas": (0.8, 0.9), **c}


def _asgd():
    for c in flag_grid(weight_decay=[0, 0.1], maximize=[False, True], t0=[1e6, 3.0]):
        yield {"lr": 1e-2, "lambd": 1e-2, **c}


def _nadam():
    for c in flag_grid(weight_decay=[0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True],
                       momentum_decay=[4e-3, 0.1]):
        yield {"lr": 1e-2, "betas": (0.8, 0.9), **c}


def _radam():
    # β₂ = 0.9 makes the rectification switch on at step 6, inside the run
    for c in flag_grid(weight_decay=[0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True]):
        yield {"lr": 1e-2, "betas": (0.8, 0.9), **c}


def _rprop():
    for c in flag_grid(maximize=[False, True], etas=[(0.5, 1.2), (0.3, 1.5)],
                       step_sizes=[(1e-6, 50), (1e-3, 0.05)]):
        yield {"lr": 1e-2, **c}


def _adafactor():
    for c in flag_grid(weight_decay=[0, 0.1], maximize=[False, True], eps=[(None, 1e-3), (1e-20, 1e-2)],
                       d=[1.0, 2.0], beta2_decay=[-0.8, -0.5]):
        yield {"lr": 1e-2, **c}


CASES = [
    (ravine.Adadelta, torch.optim.Adadelta, list(_adadelta())),
    (ravine.Adamax, torch.optim.Adamax, list(_adamax())),
    (ravine.ASGD, torch.optim.ASGD, list(_asgd())),
    (ravine.NAdam, torch.optim.NAdam, list(_nadam())),
    (ravine.RAdam, torch.optim.RAdam, list(_radam())),
    (ravine.Rprop, torch.optim.Rprop, list(_rprop())),
    (ravine.Adafactor, torch.optim.Adafactor, list(_adafactor())),
]
PARAMS = [
    pytest.param(ours, theirs, config, id=f"{ours.__name__}-{i}")
    for ours, theirs, configs in CASES
    for i, config in enumerate(configs)
]
ELEMENTWISE = [c for c in CASES if c[0].kind == "elementwise"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("ours", "theirs", "config"), PARAMS)
def test_per_tensor_path_is_bit_identical_to_torch(ours, theirs, config, dtype):
    run_against(ours, theirs, config, dtype=dtype, flags={"foreach": False}, steps=STEPS, exact=True)


@pytest.mark.parametrize(("ours", "theirs", "config"), PARAMS)
def test_multi_tensor_path_matches_torch_foreach(ours, theirs, config):
    # torch's foreach kernels group some arithmetic differently (ASGD: p −= η·(g + λ_wd·p + λ·p)), so each step is
    # checked from the same start, as torch's own harness does, and rounding cannot accumulate over 200 steps
    run_against(ours, theirs, config, flags={"foreach": True}, steps=STEPS, exact=False, rtol=1e-6, atol=1e-6,
                realign=True)


@pytest.mark.parametrize(("ours", "theirs", "config"),
                         [pytest.param(o, t, cs[-1], id=o.__name__) for o, t, cs in ELEMENTWISE])
def test_fused_path_matches_torch(ours, theirs, config):
    # torch has no fused kernel for these: its per-tensor path is the reference, ravine's flag is fused
    run_against(ours, lambda params, fused, **c: theirs(params, foreach=False, **c), config, flags={"fused": True},
                steps=50, exact=False, rtol=1e-6, atol=1e-6, realign=True)


@pytest.mark.parametrize("ours", [c[0] for c in CASES if c[0] is not ravine.Adafactor])
def test_complex_parameters_match_torch(ours):
    theirs = getattr(torch.optim, ours.__name__)
    g = torch.Generator().manual_seed(3)
    params = [torch.randn(6, 4, dtype=torch.complex64, generator=g).requires_grad_(),
              torch.randn(5, generator=g).requires_grad_()]
    for foreach in (False, True):
        reference = theirs(clone_params(params), foreach=foreach)
        candidate = ours(clone_params(params), foreach=foreach)
        rp, cp = reference.param_groups[0]["params"], candidate.param_groups[0]["params"]
        assert_same_run(reference, rp, candidate, cp, 20, exact=not foreach, rtol=1e-6, atol=1e-7)


# ---- Muon: 2-D parameters only ------------------------------------------------------------------------
MUON_SHAPES = [(8, 5), (5, 8), (8, 5), (6, 6)]


@pytest.mark.parametrize("config", list(flag_grid(nesterov=[True, False], weight_decay=[0.0, 0.1],
                                                  adjust_lr_fn=[None, "match_rms_adamw"])))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_muon_per_tensor_path_is_bit_identical_to_torch(config, dtype):
    ref_params = make_params(dtype, shapes=MUON_SHAPES)
    cand_params = clone_params(ref_params)
    reference = torch.optim.Muon(ref_params, lr=1e-2, **config)
    candidate = ravine.Muon(cand_params, lr=1e-2, foreach=False, **config)
    assert_same_run(reference, ref_params, candidate, cand_params, STEPS, exact=True)


def test_muon_batched_path_orthogonalises_same_shape_matrices_together():
    calls = []

    class Spy(ravine.Muon):
        def update(self, p, grad, state, hp):
            calls.append(tuple(p.shape))
            super().update(p, grad, state, hp)

    ref_params = make_params(shapes=MUON_SHAPES)
    cand_params = clone_params(ref_params)
    reference = torch.optim.Muon(ref_params, lr=1e-2)
    candidate = Spy(cand_params, lr=1e-2, foreach=True)
    # bf16 Newton–Schulz: a batched matmul may round differently from one matrix at a time; each step is
    # compared from the same start, within bf16's resolution of the orthogonalised update (lr · 2⁻⁸)
    assert_same_run(reference, ref_params, candidate, cand_params, 20, exact=False, rtol=1e-5, atol=1e-2 * 2**-7,
                    grads=lambda ps, s: set_grads(ps, s, skip_some=False), realign=True)
    assert calls[:3] == [(2, 8, 5), (5, 8), (6, 6)]  # the two 8×5 matrices in one call


def test_muon_refuses_what_torch_refuses():
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters whereas we found a parameter with "
                                         r"size: torch.Size\(\[3\]\)"):
        ravine.Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="Adjust learning rate function bad is not supported"):
        ravine.Muon([torch.zeros(3, 3, requires_grad=True)], adjust_lr_fn="bad")
    p = torch.zeros(3, 3, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="Muon does not support complex parameters"):
        ravine.Muon([p]).step()


# ---- SparseAdam: sparse gradients only ------------------------------------------------------------------
@pytest.mark.parametrize("maximize", [False, True])
def test_sparse_adam_matches_torch(maximize):
    ref = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    cand = ref.detach().clone().requires_grad_()
    reference = torch.optim.SparseAdam([ref], lr=0.1, maximize=maximize)
    candidate = ravine.SparseAdam([cand], lr=0.1, maximize=maximize)
    for step in range(30):
        indices = torch.tensor([[0, 0, 4, 7]]) if step % 3 else torch.tensor([[2, 9]])
        values = torch.full((indices.shape[1], 3), 0.1 * (step + 1), dtype=torch.float64)
        values = values + ref.detach()[indices[0]]
        for p in (ref, cand):
            p.grad = torch.sparse_coo_tensor(indices, values, (10, 3))
        reference.step()
        candidate.step()
        assert torch.equal(ref, cand)
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(reference.state[ref][key], candidate.state[cand][key])
        assert reference.state[ref]["step"] == candidate.state[cand]["step"] == step + 1


def test_sparse_adam_refuses_what_torch_refuses():
    p = torch.zeros(4, 2, requires_grad=True)
    p.grad = torch.ones(4, 2)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients, please consider Adam"):
        ravine.SparseAdam([p]).step()
    with pytest.raises(ValueError, match=r"Complex params at indices \[\[0, 0\]\]"):
        ravine.SparseAdam([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])
    with pytest.raises(ValueError, match=r"Invalid learning rate: 0\.0"):
        ravine.SparseAdam([p], lr=0.0)


# ---- LBFGS: same iterates through the closure -------------------------------------------------------------
def _rosenbrock(params):
    x, y = params[0][0], params[0][1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _mlp_loss(params):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    inputs = torch.randn(32, 4, generator=g, dtype=params[0].dtype)
    targets = torch.randn(32, 1, generator=g, dtype=params[0].dtype)
    w1, b1, w2 = params
    return ((torch.tanh(inputs @ w1 + b1) @ w2 - targets) ** 2).mean()


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("problem", ["rosenbrock", "mlp"])
def test_lbfgs_takes_the_same_iterates_as_torch(problem, line_search_fn):
    g = torch.Generator().manual_seed(2)
    if problem == "rosenbrock":
        start, loss_fn = [torch.tensor([-1.5, 2.0], dtype=torch.float64)], _rosenbrock
    else:
        start = [torch.randn(4, 8, generator=g, dtype=torch.float64), torch.zeros(8, dtype=torch.float64),
                 torch.randn(8, 1, generator=g, dtype=torch.float64)]
        loss_fn = _mlp_loss
    runs = []
    for cls in (torch.optim.LBFGS, ravine.LBFGS):
        params = [t.clone().requires_grad_() for t in start]
        optimizer = cls(params, lr=1, max_iter=10, history_size=5, line_search_fn=line_search_fn)

        def closure(params=params, optimizer=optimizer):
            optimizer.zero_grad()
            loss = loss_fn(params)
            loss.backward()
            return loss

        trace = []
        for _ in range(8):
            loss = optimizer.step(closure)
            trace.append((loss.item(), [p.detach().clone() for p in params]))
        runs.append((trace, optimizer.state[params[0]]))
    (ref_trace, ref_state), (cand_trace, cand_state) = runs
    for (ref_loss, ref_ps), (cand_loss, cand_ps) in zip(ref_trace, cand_trace, strict=True):
        assert ref_loss == cand_loss
        assert all(torch.equal(a, b) for a, b in zip(ref_ps, cand_ps, strict=True))
    assert ref_state["func_evals"] == cand_state["func_evals"] and ref_state["n_iter"] == cand_state["n_iter"]
    assert ref_trace[-1][0] < ref_trace[0][0]  # it optimised something


def test_lbfgs_refuses_paths_and_groups_it_cannot_run():
    p = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        ravine.LBFGS([{"params": [p]}, {"params": [torch.zeros(1, requires_grad=True)]}])
    optimizer = ravine.LBFGS([p], line_search_fn="wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        optimizer.step(closure)
    for flag in ("foreach", "fused"):
        with pytest.raises(ValueError, match=rf"LBFGS\({flag}=True\) is not available: .*closure"):
            ravine.LBFGS([{"params": [p], flag: True}])


@pytest.mark.parametrize(("cls", "flag", "paths"), [
    (ravine.Adafactor, "fused", "per-tensor, multi-tensor"),
    (ravine.Muon, "fused", "per-tensor, multi-tensor"),
])
def test_asking_for_a_path_the_math_cannot_run_on_is_a_clear_error(cls, flag, paths):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\({flag}=True\) is not available: .* runs on {paths}"):
        cls([torch.zeros(3, 3, requires_grad=True)], **{flag: True})


def test_adafactor_refuses_a_row_sharded_matrix_rather_than_factor_a_shard(tmp_path):
    import torch.distributed as dist
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        matrix = torch.nn.Parameter(distribute_tensor(torch.randn(4, 3), mesh, [Shard(0)]))
        vector = torch.nn.Parameter(distribute_tensor(torch.randn(4), mesh, [Shard(0)]))
        matrix.grad = distribute_tensor(torch.randn(4, 3), mesh, [Shard(0)])
        vector.grad = distribute_tensor(torch.randn(4), mesh, [Shard(0)])
        ravine.Adafactor([vector]).step()  # a sharded vector is fine: its norms are reduced by DTensor
        with pytest.raises(RuntimeError, match=r"Adafactor cannot factor a sharded parameter of shape \(4, 3\)"):
            ravine.Adafactor([matrix]).step()
    finally:
        dist.destroy_process_group()

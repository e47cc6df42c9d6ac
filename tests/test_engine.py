"""The engine's contract: custom optimizers, path choice, closures, hooks, skipped parameters, schedulers."""

from __future__ import annotations

import pytest
import torch
from helpers import amp_step, assert_same_run, clone_params, make_params, set_grads
from torch.optim import optimizer as torch_optimizer

import ravine
from ravine.engine import eager as engine_eager

ALGORITHMS = [ravine.SGD, ravine.Adagrad, ravine.RMSprop, ravine.Adam, ravine.Lion, ravine.ADOPT]


class SimpleSGD(ravine.Optimizer):
    """A minimal SGD, p ← p − lr·g, as a full torch optimizer."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, dict(lr=lr))

    def update(self, p, grad, state, hp):
        p.add_(grad, alpha=-hp.lr)


class HeavyBall(ravine.Optimizer):
    """A custom optimizer with state and a step counter: b ← μ·b + g; p ← p − lr·b/(1 − μᵗ)."""

    step_counter = True

    def __init__(self, params, lr=0.01, momentum=0.9, *, foreach=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, foreach=foreach))

    def init_state(self, p, hp):
        return {"velocity": torch.zeros_like(p)}

    def update(self, p, grad, state, hp):
        state.velocity.mul_(hp.momentum).add_(grad)
        p.add_(state.velocity, alpha=-hp.lr / (1 - hp.momentum**hp.step))


@pytest.mark.parametrize("foreach", [False, True])
def test_simple_sgd_in_a_few_lines_equals_torch_sgd(foreach):
    ref_params = make_params()
    cand_params = clone_params(ref_params)
    reference = torch.optim.SGD(ref_params, lr=0.01, foreach=foreach)
    candidate = SimpleSGD(cand_params, lr=0.01)
    candidate.param_groups[0]["foreach"] = foreach
    assert_same_run(reference, ref_params, candidate, cand_params, 20, exact=not foreach)


def test_custom_optimizer_gets_state_dict_maximize_and_both_paths():
    a_params, b_params = make_params(), make_params()
    a, b = HeavyBall(a_params, foreach=False), HeavyBall(b_params, foreach=True)
    assert_same_run(a, a_params, b, b_params, 10, exact=False)
    sd = b.state_dict()
    assert set(sd["state"][1]) == {"step", "velocity"} and sd["param_groups"][0]["maximize"] is False
    resumed = HeavyBall(clone_params(b_params))
    resumed.load_state_dict(sd)
    assert resumed.state_dict()["state"][1]["step"] == sd["state"][1]["step"]


def test_custom_optimizer_without_update_says_what_is_missing():
    class Incomplete(ravine.Optimizer):
        pass

    params = make_params()
    set_grads(params, 0, skip_some=False)
    with pytest.raises(NotImplementedError, match="Incomplete must define update"):
        Incomplete(params, {"lr": 1.0}).step()


def test_update_receives_tensor_lists_on_the_multi_tensor_path(monkeypatch):
    seen = []

    class Spy(SimpleSGD):
        def update(self, p, grad, state, hp):
            seen.append(type(p))
            super().update(p, grad, state, hp)

    params = make_params()
    set_grads(params, 0, skip_some=False)
    Spy(params, foreach=False).step()
    assert seen and set(seen) == {torch.Tensor}
    seen.clear()
    monkeypatch.setattr(engine_eager, "foreach_devices", lambda: ["cpu"])  # as if CPU were CUDA
    Spy(params).step()
    assert set(seen) == {ravine.TensorList} and len(seen) < len(params)  # batched (chunked by size)


def test_closure_runs_with_grad_enabled_and_its_loss_is_returned():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = ravine.Adam([w], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = optimizer.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert optimizer.step(closure=None) is None


def test_step_hooks_fire_in_torch_order_even_without_gradients():
    calls = []
    optimizer = ravine.Lion(make_params())
    handles = [
        torch_optimizer.register_optimizer_step_pre_hook(lambda *a: calls.append("global pre")),
        optimizer.register_step_pre_hook(lambda *a: calls.append("pre")),
        optimizer.register_step_post_hook(lambda *a: calls.append("post")),
        torch_optimizer.register_optimizer_step_post_hook(lambda *a: calls.append("global post")),
    ]
    optimizer.step()
    for h in handles:
        h.remove()
    optimizer.step()
    assert calls == ["global pre", "pre", "post", "global post"]


@pytest.mark.parametrize("cls", ALGORITHMS)
@pytest.mark.parametrize("foreach", [False, True])
def test_parameters_without_gradients_are_untouched(cls, foreach):
    params = make_params()
    frozen = params[1]
    before = frozen.detach().clone()
    optimizer = cls(params, foreach=foreach, weight_decay=0.1)
    for step in range(3):
        set_grads(params, step, skip_some=False)
        frozen.grad = None
        optimizer.step()
    assert torch.equal(frozen, before)
    if not optimizer.eager_state:
        assert frozen not in optimizer.state  # no empty state entries either


def test_sgd_without_momentum_keeps_no_state():
    params = make_params()
    optimizer = ravine.SGD(params, lr=0.1)
    set_grads(params, 0, skip_some=False)
    optimizer.step()
    assert len(optimizer.state) == 0


@pytest.mark.parametrize("foreach", [False, True])
def test_zero_size_and_zero_dim_parameters_step(foreach):
    params = make_params(shapes=[(0,), (), (3, 0, 2), (4,)])
    optimizer = ravine.AdamW(params, foreach=foreach)
    for step in range(3):
        set_grads(params, step, skip_some=False)
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)


@pytest.mark.parametrize("cls", ALGORITHMS)
def test_torch_schedulers_drive_ravine_optimizers(cls):
    params = make_params()
    optimizer = cls(params, lr=0.01)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    for step in range(3):
        set_grads(params, step, skip_some=False)
        optimizer.step()
        step_lr.step()
        plateau.step(1.0)  # a constant metric: reduce every epoch after the first
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.9**3 * 0.5**2)


def test_per_group_hyperparameters_are_honoured():
    params = make_params()
    optimizer = ravine.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.0}], lr=0.1)
    before = [p.detach().clone() for p in params]
    set_grads(params, 0, skip_some=False)
    optimizer.step()
    assert not torch.equal(params[0], before[0])
    assert all(torch.equal(p, b) for p, b in zip(params[2:], before[2:], strict=True))


def test_grad_scaler_loop_skips_non_finite_steps():
    model = torch.nn.Linear(3, 1)
    optimizer = ravine.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x = torch.randn(8, 3)
    for _ in range(3):
        amp_step(model, optimizer, scaler, x, clip=1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps_before = [s["step"].clone() for s in optimizer.state.values()]
    amp_step(model, optimizer, scaler, x, poison=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(a, s["step"]) for a, s in zip(steps_before, optimizer.state.values(), strict=True))


def test_multi_tensor_batches_never_exceed_the_largest_parameter(monkeypatch):
    sizes = []

    class Spy(ravine.Adam):
        def update(self, p, grad, state, hp):
            sizes.append(sum(t.numel() for t in p))
            super().update(p, grad, state, hp)

    params = make_params(shapes=[(10, 10), (30,), (40,), (50,), (20,), (5, 5)])
    set_grads(params, 0, skip_some=False)
    Spy(params, foreach=True).step()
    assert sum(sizes) == sum(p.numel() for p in params)  # every parameter updated once
    assert max(sizes) <= 100 and len(sizes) < len(params)  # chunks bounded by the largest, still batched

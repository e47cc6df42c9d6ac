"""Lion against lion-pytorch, ADOPT against the official adopt package, Lookahead against the paper."""

from __future__ import annotations

import adopt
import lion_pytorch
import pytest
import torch
from helpers import assert_same_run, clone_params, flag_grid, make_params, set_grads

import ravine

STEPS = 200


@pytest.mark.parametrize("foreach", [False, True], ids=["per-tensor", "multi-tensor"])
@pytest.mark.parametrize("config", list(flag_grid(weight_decay=[0.0, 0.1], betas=[(0.9, 0.99), (0.95, 0.98)])))
def test_lion_matches_lion_pytorch(config, foreach):
    ref_params = make_params()
    cand_params = clone_params(ref_params)
    reference = lion_pytorch.Lion(ref_params, lr=1e-3, **config)
    candidate = ravine.Lion(cand_params, lr=1e-3, foreach=foreach, **config)
    assert_same_run(reference, ref_params, candidate, cand_params, STEPS, exact=False, rtol=1e-6, atol=1e-7)


ADOPT_CONFIGS = list(flag_grid(decouple=[False, True], weight_decay=[0.0, 0.1], clip=[True, False]))


# The official foreach path takes the clipping bound from the *first* parameter's step for the whole group,
# so it is only a reference while every parameter has the same step count; its per-tensor path is exact
# for the gradient stream that leaves some parameters without gradients for a few steps.
ADOPT_PATHS = [
    pytest.param(False, False, True, id="per-tensor-vs-per-tensor"),
    pytest.param(True, False, True, id="multi-tensor-vs-per-tensor"),
    pytest.param(True, True, False, id="multi-tensor-vs-multi-tensor"),
]


@pytest.mark.parametrize(("foreach", "ref_foreach", "skip_some"), ADOPT_PATHS)
@pytest.mark.parametrize("config", ADOPT_CONFIGS)
def test_adopt_matches_official_package(config, foreach, ref_foreach, skip_some):
    config = dict(config)
    clip = config.pop("clip")
    extra = {} if clip else {"clip_lambda": None}
    ref_params = make_params()
    cand_params = clone_params(ref_params)
    reference = adopt.ADOPT(ref_params, lr=1e-2, foreach=ref_foreach, **config, **extra)
    candidate = ravine.ADOPT(cand_params, lr=1e-2, foreach=foreach, **config, **extra)
    assert_same_run(
        reference, ref_params, candidate, cand_params, STEPS, exact=False, rtol=1e-6, atol=1e-7,
        grads=lambda ps, step: set_grads(ps, step, skip_some=skip_some),
    )


class PaperLookahead:
    """Algorithm 1 of Zhang et al. (2019), written literally: φ ← φ + α(θ − φ), θ ← φ every k steps."""

    def __init__(self, inner: torch.optim.Optimizer, params, k: int, alpha: float) -> None:
        self.inner, self.params, self.k, self.alpha = inner, params, k, alpha
        self.slow = [p.detach().clone() for p in params]
        self.t = 0

    @property
    def state(self):
        return self.inner.state

    @torch.no_grad()
    def step(self) -> None:
        self.inner.step()
        self.t += 1
        if self.t % self.k == 0:
            for p, slow in zip(self.params, self.slow, strict=True):
                slow += self.alpha * (p - slow)
                p.copy_(slow)


@pytest.mark.parametrize(("k", "alpha"), [(5, 0.5), (3, 0.8), (1, 0.3)])
@pytest.mark.parametrize("inner", ["ravine.Adam", "torch.SGD"])
def test_lookahead_matches_the_paper(inner, k, alpha):
    def make(params):
        if inner == "torch.SGD":
            return torch.optim.SGD(params, lr=1e-2, momentum=0.9)
        return ravine.Adam(params, lr=1e-2)

    ref_params = make_params(torch.float64)
    cand_params = clone_params(ref_params)
    reference = PaperLookahead(make(ref_params), ref_params, k, alpha)
    candidate = ravine.Lookahead(make(cand_params), k=k, alpha=alpha)
    assert_same_run(reference, ref_params, candidate, cand_params, 60, exact=False, rtol=1e-9, atol=1e-12)


def test_lookahead_resume_is_bit_identical(tmp_path):
    def make(params):
        return ravine.Lookahead(ravine.AdamW(params, lr=1e-2), k=4, alpha=0.5)

    params = make_params()
    resumed_params = clone_params(params)
    uninterrupted = make(params)
    first = make(resumed_params)
    for step in range(6):  # stops mid-cycle: the counter and slow weights must survive
        for ps, opt in ((params, uninterrupted), (resumed_params, first)):
            set_grads(ps, step, skip_some=False)
            opt.step()
    torch.save(first.state_dict(), tmp_path / "opt.pt")
    fresh_params = clone_params(resumed_params)
    resumed = make(fresh_params)
    resumed.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert resumed.lookahead_step == 6
    for step in range(6, 20):
        for ps, opt in ((params, uninterrupted), (fresh_params, resumed)):
            set_grads(ps, step, skip_some=False)
            opt.step()
        for a, b in zip(params, fresh_params, strict=True):
            assert torch.equal(a, b)


def test_lookahead_forwards_groups_state_and_schedulers():
    params = make_params()
    inner = ravine.SGD(params[:2], lr=0.1, momentum=0.9)
    la = ravine.Lookahead(inner)
    assert la.param_groups is inner.param_groups
    la.add_param_group({"params": params[2:], "lr": 0.5})
    assert len(inner.param_groups) == 2
    scheduler = torch.optim.lr_scheduler.StepLR(la, step_size=1, gamma=0.5)
    set_grads(params, 0, skip_some=False)
    la.step()
    scheduler.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.05)
    assert la.state is inner.state and len(la.state) == 4
    la.zero_grad()
    assert all(p.grad is None for p in params)
    calls = []
    la.register_step_post_hook(lambda opt, args, kwargs: calls.append(opt))
    la.step()
    assert calls == [la]


def test_lookahead_state_dict_loads_into_the_plain_inner_optimizer():
    params = make_params()
    la = ravine.Lookahead(torch.optim.Adam(params, lr=1e-2))
    set_grads(params, 0, skip_some=False)
    la.step()
    plain = torch.optim.Adam(clone_params(params), lr=1e-2)
    sd = la.state_dict()
    assert all("slow_param" in s for s in sd["state"].values())
    plain.load_state_dict(la.optimizer.state_dict())
    assert plain.state_dict()["state"][0]["step"] == 1


@pytest.mark.parametrize("foreach", [False, True])
def test_adopt_complex_parameters_match_official_package(foreach):
    g = torch.Generator().manual_seed(5)
    ref_params = [torch.randn(6, 4, dtype=torch.complex64, generator=g).requires_grad_()]
    cand_params = clone_params(ref_params)
    reference = adopt.ADOPT(ref_params, lr=1e-2, weight_decay=0.1, foreach=foreach)
    candidate = ravine.ADOPT(cand_params, lr=1e-2, weight_decay=0.1, foreach=foreach)
    assert_same_run(reference, ref_params, candidate, cand_params, 30, exact=False, rtol=1e-6, atol=1e-7)

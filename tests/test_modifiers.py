"""Modifiers (cautious, AdEMAMix) against references written from their papers, pytorch-optimizer's cautious
Lion, heavyball's AdEMAMix, and in combination (cautious AdEMAMix, cautious Lion, cautious AdamW under
Lookahead)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import ravine

PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}


class PaperAdEMAMix(torch.optim.Optimizer):
    """Written from the papers: AdEMAMix's Algorithm 1 (Pagliardini et al., 2024; α and β₃ warmups), AdamW's
    decoupled decay, and optionally the cautious mask of Liang et al. (2024) on the final update. With
    ``alpha=0`` this is (cautious) AdamW."""

    def __init__(self, params, lr, betas, alpha, eps, weight_decay, t_alpha=None, t_beta3=None, cautious=False):
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      t_alpha=t_alpha, t_beta3=t_beta3, cautious=cautious))

    @staticmethod
    def schedules(t, group):
        beta1, _, beta3 = group["betas"]
        alpha = group["alpha"]
        if group["t_alpha"] is not None:
            alpha = min(t * alpha / group["t_alpha"], alpha)
        if group["t_beta3"] is not None and t < group["t_beta3"]:
            def half_life(b):
                return math.log(0.5) / math.log(b + 1e-8) - 1
            a = t / group["t_beta3"]
            beta3 = 0.5 ** (1 / ((1 - a) * half_life(beta1) + a * half_life(beta3) + 1))
        return alpha, beta3

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2, _ = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m1=torch.zeros_like(p), m2=torch.zeros_like(p), nu=torch.zeros_like(p))
                state["t"] += 1
                t, g = state["t"], p.grad
                alpha, beta3 = self.schedules(t, group)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["m1"].lerp_(g, 1 - beta1)
                state["nu"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["m2"].mul_(beta3).add_(g, alpha=1 - beta3)
                denom = state["nu"].sqrt().div_(math.sqrt(1 - beta2**t)).add_(group["eps"])
                update = state["m1"].div(1 - beta1**t)
                if alpha != 0:
                    update.add_(state["m2"].mul(alpha))
                update.div_(denom)
                if group["cautious"]:
                    mask = (update * g > 0).to(g.dtype)
                    update.mul_(mask * (mask.numel() / (mask.sum() + 1)))
                p.add_(update, alpha=-group["lr"])


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3))


def _train(model, optimizer, steps, start=0):
    for step in range(start, start + steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(16, 5, generator=g)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), torch.cos(x[:, :3])).backward()
        optimizer.step()


def _close(a_model, b_model, exact):
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-6, "atol": 1e-6}
    for a, b in zip(a_model.parameters(), b_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, **tol)


CASES = {
    "cautious AdamW": (dict(cautious=True), dict(alpha=0.0, cautious=True)),
    "AdEMAMix": (dict(ademamix_alpha=5.0, ademamix_beta3=0.999, ademamix_alpha_warmup=60,
                      ademamix_beta3_warmup=60), dict(alpha=5.0, t_alpha=60, t_beta3=60, beta3=0.999)),
    "cautious AdEMAMix": (dict(cautious=True, ademamix_alpha=5.0, ademamix_beta3=0.999),
                          dict(alpha=5.0, beta3=0.999, cautious=True)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", list(PATHS))
def test_adamw_modifiers_match_their_papers_over_100_steps(case, path):
    ours_options, paper_options = CASES[case]
    paper_options = dict(paper_options)
    beta3 = paper_options.pop("beta3", 0.9999)
    ours_model = _model()
    paper_model = copy.deepcopy(ours_model)
    ours = ravine.AdamW(ours_model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1, **ours_options,
                        **PATHS[path])
    paper = PaperAdEMAMix(paper_model.parameters(), lr=3e-3, betas=(0.9, 0.99, beta3), eps=1e-8,
                          weight_decay=0.1, **paper_options)
    _train(ours_model, ours, 100)
    _train(paper_model, paper, 100)
    _close(ours_model, paper_model, exact=False)  # AdamW's lerp_ and the paper's order agree to rounding


def test_the_ademamix_class_takes_the_reference_signature():
    ours_model = _model()
    paper_model = copy.deepcopy(ours_model)
    ours = ravine.AdEMAMix(ours_model.parameters(), lr=2e-3, betas=(0.9, 0.999, 0.9999), alpha=8.0,
                           beta3_warmup=50, alpha_warmup=50, weight_decay=0.05)
    paper = PaperAdEMAMix(paper_model.parameters(), lr=2e-3, betas=(0.9, 0.999, 0.9999), alpha=8.0, eps=1e-8,
                          weight_decay=0.05, t_alpha=50, t_beta3=50)
    _train(ours_model, ours, 80)
    _train(paper_model, paper, 80)
    _close(ours_model, paper_model, exact=False)
    assert set(next(iter(ours.state.values()))) == {"step", "exp_avg", "exp_avg_sq", "exp_avg_slow"}
    with pytest.raises(ValueError, match="AdEMAMix takes three"):
        ravine.AdEMAMix(ours_model.parameters(), betas=(0.9, 0.999))


HEAVYBALL_CASES = {
    "warmups, decay": dict(alpha=5.0, beta3_warmup=60, alpha_warmup=60, weight_decay=0.1),
    "no warmup": dict(alpha=8.0, weight_decay=0.0),
}


@pytest.mark.parametrize(("case", "path"), [("warmups, decay", "per-tensor"), ("no warmup", "per-tensor"),
                                            ("warmups, decay", "fused")])
def test_ademamix_matches_heavyball(case, path):
    """heavyball's AdEMAMix, an independent implementation, over 100 steps. It bias-corrects by debiasing the
    EMA rates (β̃ₜ = 1 − (1 − β)/(1 − βᵗ)) and floors √v̂ at ε instead of adding ε, so it agrees to rounding and ε,
    not bit for bit."""
    heavyball = pytest.importorskip("heavyball")
    ours_model = _model()
    theirs_model = copy.deepcopy(ours_model)
    options = dict(lr=1e-3, betas=(0.9, 0.999, 0.9999), eps=1e-8, **HEAVYBALL_CASES[case])
    ours = ravine.AdEMAMix(ours_model.parameters(), **options, **PATHS[path])
    theirs = heavyball.AdEMAMix(theirs_model.parameters(), **options)
    _train(ours_model, ours, 100)
    _train(theirs_model, theirs, 100)
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


class PaperCautiousLion(torch.optim.Optimizer):
    """Lion (Chen et al., 2023, Program 1) with the cautious mask of Liang et al. (2024) on its sign update."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                g = p.grad
                update = (beta1 * m + (1 - beta1) * g).sign()
                mask = (update * g > 0).to(g.dtype)
                update = update * mask * (mask.numel() / (mask.sum() + 1))
                p.mul_(1 - group["lr"] * group["weight_decay"]).sub_(group["lr"] * update)
                m.mul_(beta2).add_((1 - beta2) * g)


@pytest.mark.parametrize("path", list(PATHS))
def test_cautious_lion_matches_its_papers_over_100_steps(path):
    ours_model = _model()
    paper_model = copy.deepcopy(ours_model)
    ours = ravine.Lion(ours_model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1, cautious=True,
                       **PATHS[path])
    paper = PaperCautiousLion(paper_model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    _train(ours_model, ours, 100)
    _train(paper_model, paper, 100)
    _close(ours_model, paper_model, exact=False)


def test_cautious_lion_matches_pytorch_optimizer():
    po = pytest.importorskip("pytorch_optimizer")
    ours_model = _model()
    theirs_model = copy.deepcopy(ours_model)
    ours = ravine.Lion(ours_model.parameters(), lr=1e-3, weight_decay=0.1, cautious=True)
    theirs = po.Lion(theirs_model.parameters(), lr=1e-3, weight_decay=0.1, cautious=True, foreach=False)
    _train(ours_model, ours, 100)
    _train(theirs_model, theirs, 100)
    _close(ours_model, theirs_model, exact=False)


@pytest.mark.parametrize("path", list(PATHS))
def test_cautious_lion_and_sgd_agree_on_every_path(path):
    for cls, options in ((ravine.Lion, dict(lr=1e-3)), (ravine.SGD, dict(lr=0.05, momentum=0.9, nesterov=True))):
        per_tensor_model = _model()
        other_model = copy.deepcopy(per_tensor_model)
        _train(per_tensor_model, cls(per_tensor_model.parameters(), cautious=True, foreach=False, **options), 30)
        _train(other_model, cls(other_model.parameters(), cautious=True, **PATHS[path], **options), 30)
        _close(other_model, per_tensor_model, exact=path != "fused")


def test_cautious_switched_on_and_off_mid_training_on_the_fused_path():
    """The fused path lays buffers out for whole-tensor reductions only while a group needs them: switching
    cautious in the param group rebuilds them, and the run still matches the per-tensor path."""
    per_tensor_model = _model()
    fused_model = copy.deepcopy(per_tensor_model)
    per_tensor = ravine.AdamW(per_tensor_model.parameters(), lr=3e-3, foreach=False)
    fused = ravine.AdamW(fused_model.parameters(), lr=3e-3, fused=True)
    for start, on in ((0, False), (5, True), (10, False), (15, True)):
        for optimizer in (per_tensor, fused):
            optimizer.param_groups[0]["cautious"] = on
        _train(per_tensor_model, per_tensor, 5, start=start)
        _train(fused_model, fused, 5, start=start)
        (flat,) = fused._fused.flat_groups.values()
        assert flat.aligned is on
        _close(fused_model, per_tensor_model, exact=False)


def test_cautious_changes_the_step_only_where_signs_disagree():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([1.0, -1.0, 1.0, -1.0])
    optimizer = ravine.SGD([p], lr=1.0, momentum=0.9, cautious=True)
    optimizer.step()  # the first buffer is the gradient: every sign agrees, scale 4 / (4 + 1)
    torch.testing.assert_close(p.detach(), -p.grad * 0.8)
    p.grad = torch.tensor([-0.5, -3.0, 1.0, 1.0])  # buffer 0.9·b + g = [0.4, -3.9, 1.9, 0.1]: disagrees at 0
    before = p.detach().clone()
    optimizer.step()
    step = p.detach() - before
    torch.testing.assert_close(step, -torch.tensor([0.0, -3.9, 1.9, 0.1]) * 4 / 4)  # 3 kept: 4 / (3 + 1)


def test_cautious_adamw_under_lookahead_matches_lookahead_of_the_paper():
    ours_model = _model()
    paper_model = copy.deepcopy(ours_model)
    ours = ravine.Lookahead(ravine.AdamW(ours_model.parameters(), lr=3e-3, cautious=True, fused=True), k=4)
    paper = ravine.Lookahead(PaperAdEMAMix(paper_model.parameters(), lr=3e-3, betas=(0.9, 0.999, 0.9999),
                                           alpha=0.0, eps=1e-8, weight_decay=0.01, cautious=True), k=4)
    _train(ours_model, ours, 40)
    _train(paper_model, paper, 40)
    _close(ours_model, paper_model, exact=False)


def test_modified_state_resumes_bit_for_bit():
    model = _model()
    optimizer = ravine.AdEMAMix(model.parameters(), alpha=5.0, alpha_warmup=20, beta3_warmup=20)
    _train(model, optimizer, 10)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    _train(model, optimizer, 10, start=10)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed_model = _model()
    resumed_model.load_state_dict(saved["model"])
    resumed = ravine.AdEMAMix(resumed_model.parameters(), alpha=5.0, alpha_warmup=20, beta3_warmup=20)
    resumed.load_state_dict(saved["optimizer"])
    _train(resumed_model, resumed, 10, start=10)
    _close(model, resumed_model, exact=True)


def test_a_modifier_an_algorithm_cannot_take_is_an_error_naming_both():
    params = _model().parameters()
    with pytest.raises(ValueError, match="Lion does not take ademamix_alpha: ademamix modifies an optimizer's "
                                         "momentum"):
        ravine.Lion(params, ademamix_alpha=2.0)
    with pytest.raises(ValueError, match="RMSprop does not take cautious"):
        ravine.RMSprop(_model().parameters(), cautious=True)
    with pytest.raises(ValueError, match="ademamix_beta3"):
        ravine.AdamW(_model().parameters(), ademamix_alpha=2.0, ademamix_beta3=1.5)
    with pytest.raises(ValueError, match="Invalid ademamix_alpha_warmup: 0"):
        ravine.AdamW(_model().parameters(), ademamix_alpha=2.0, ademamix_alpha_warmup=0)
    with pytest.raises(ValueError, match="RMSprop does not take cautious"):
        ravine.RMSprop(_model().parameters()).add_param_group({"params": [nn.Parameter(torch.zeros(1))],
                                                               "cautious": True})

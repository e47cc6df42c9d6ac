"""MuonWithAuxAdam against Keller Jordan's reference (``muon-optimizer``), and the routing helper."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import ravine

muon = pytest.importorskip("muon")


class TinyLM(nn.Module):
    """Embedding, four same-shape hidden matrices (so the multi-tensor path stacks them), norm, head."""

    def __init__(self, vocab: int = 40, d: int = 24) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
                                    for _ in range(2))
        self.square = nn.Linear(d, d, bias=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.norm(self.square(h)))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, 40, (4, 12), generator=g)
        optimizer.zero_grad()
        model(x).logsumexp(-1).mean().backward()
        optimizer.step()


def _reference_groups(groups: list[dict], model: nn.Module) -> list[dict]:
    by_name = dict(model.named_parameters())
    keys = {"lr", "momentum", "weight_decay", "betas", "eps", "use_muon"}  # engine flags are ravine's own
    return [{**{k: v for k, v in g.items() if k in keys}, "params": [by_name[n] for n, _ in g["params"]]}
            for g in groups]


@pytest.mark.parametrize("flags", [{"foreach": False}, {"foreach": True}], ids=["per-tensor", "multi-tensor"])
def test_matches_the_reference_over_100_steps(flags):
    torch.manual_seed(0)
    ours = TinyLM()
    theirs = copy.deepcopy(ours)
    groups = ravine.muon_param_groups(ours, lr=0.02, weight_decay=0.01, adam_lr=3e-3, adam_weight_decay=0.01)
    _train(ours, ravine.MuonWithAuxAdam(groups, **flags), 100)
    _train(theirs, muon.SingleDeviceMuonWithAuxAdam(_reference_groups(groups, theirs)), 100)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_adamw_groups_fuse_and_stay_within_1e_6_of_the_reference():
    # Only AdamW groups here: with Muon groups in the same model, a 1e-9 difference flips a bfloat16 rounding
    # inside Newton–Schulz and the runs part at bfloat16's resolution, which says nothing about AdamW.
    torch.manual_seed(1)
    ours = TinyLM()
    theirs = copy.deepcopy(ours)
    groups = [{"params": list(ours.named_parameters()), "use_muon": False, "lr": 3e-3, "weight_decay": 0.01}]
    # 30 steps of training: the fused kernel's different rounding (≤ 1e-7 per step) feeds back through the loss
    _train(ours, ravine.MuonWithAuxAdam(groups, fused=True), 30)
    _train(theirs, muon.SingleDeviceMuonWithAuxAdam(_reference_groups(groups, theirs)), 30)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


def test_the_gradient_is_left_as_autograd_made_it():
    layer = nn.Linear(6, 6, bias=False)
    layer.weight.grad = torch.randn(6, 6)
    before = layer.weight.grad.clone()
    optimizer = ravine.MuonWithAuxAdam([{"params": [layer.weight], "use_muon": True}])
    optimizer.step()
    optimizer.step()
    assert torch.equal(layer.weight.grad, before)


def test_conv_weights_are_orthogonalised_as_their_flattened_matrix():
    conv = nn.Conv2d(4, 8, 3, bias=False)
    flat = nn.Parameter(conv.weight.detach().reshape(8, -1).clone())
    ours = ravine.MuonWithAuxAdam([{"params": [conv.weight], "use_muon": True, "weight_decay": 0.1}])
    theirs = muon.SingleDeviceMuon([flat], lr=0.02, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        grad = torch.randn(8, 4, 3, 3, generator=g)
        conv.weight.grad, flat.grad = grad, grad.reshape(8, -1).clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(conv.weight.detach().reshape(8, -1), flat.detach(), rtol=0, atol=0)


def test_a_checkpoint_resumes_bit_for_bit():
    torch.manual_seed(2)
    model = TinyLM()
    optimizer = ravine.MuonWithAuxAdam(ravine.muon_param_groups(model))
    _train(model, optimizer, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    _train(model, optimizer, 5, seed=1)

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = TinyLM()
    resumed.load_state_dict(saved["model"])
    again = ravine.MuonWithAuxAdam(ravine.muon_param_groups(resumed))
    again.load_state_dict(saved["optimizer"])
    assert again.state_dict()["param_groups"] == saved["optimizer"]["param_groups"]
    _train(resumed, again, 5, seed=1)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_groups_must_say_which_family_they_are():
    w = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="use_muon"):
        ravine.MuonWithAuxAdam([w])
    with pytest.raises(ValueError, match=r"Muon groups take .*betas"):
        ravine.MuonWithAuxAdam([{"params": [w], "use_muon": True, "betas": (0.9, 0.95)}])
    with pytest.raises(ValueError, match=r"AdamW groups take .*momentum"):
        ravine.MuonWithAuxAdam([{"params": [w], "use_muon": False, "momentum": 0.9}])
    with pytest.raises(ValueError, match="1-D parameter of shape"):
        ravine.MuonWithAuxAdam([{"params": [nn.Parameter(torch.zeros(4))], "use_muon": True}])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        ravine.MuonWithAuxAdam([{"params": [w], "use_muon": True, "lr": -1.0}])
    with pytest.raises(ValueError, match=r"fused=True\) is not available.*tensorwise"):
        ravine.MuonWithAuxAdam([{"params": [w], "use_muon": True}], fused=True)


# ---- routing ------------------------------------------------------------------------------------------------
def test_routing_follows_the_rule_not_just_ndim():
    model = TinyLM()
    groups = ravine.muon_param_groups(model)
    routes = {r.name: r for r in groups.routes}
    assert not routes["embed.weight"].use_muon and routes["embed.weight"].reason == "embedding"
    assert not routes["head.weight"].use_muon and "output head" in routes["head.weight"].reason
    assert routes["square.weight"].use_muon and routes["blocks.0.0.weight"].use_muon
    assert not routes["norm.weight"].use_muon and not routes["blocks.1.2.bias"].use_muon
    muon_names = {name for g in groups if g["use_muon"] for name, _ in g["params"]}
    assert muon_names == {n for n, r in routes.items() if r.use_muon}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_conv_weights_route_to_muon_and_a_named_head_to_adamw():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4), nn.Linear(4, 2))
    groups = ravine.muon_param_groups(model, head="2.weight")
    routes = {r.name: r for r in groups.routes}
    assert routes["0.weight"].use_muon and routes["0.weight"].reason == "4-D weight as a matrix"
    assert not routes["2.weight"].use_muon and routes["2.weight"].reason == "output head"
    assert routes["3.weight"].use_muon
    with pytest.raises(ValueError, match=r"head='nope\.weight'"):
        ravine.muon_param_groups(model, head="nope.weight")


def test_overrides_win_and_bad_ones_name_the_pattern():
    model = TinyLM()
    groups = ravine.muon_param_groups(model, overrides={"blocks.0.*": "adamw", "head.weight": "muon"})
    routes = {r.name: r for r in groups.routes}
    first = routes["blocks.0.0.weight"]
    assert not first.use_muon and first.reason == "override 'blocks.0.*'"
    assert routes["head.weight"].use_muon
    with pytest.raises(ValueError, match=r"'attn\.\*' matches no trainable parameter"):
        ravine.muon_param_groups(model, overrides={"attn.*": "adamw"})
    with pytest.raises(ValueError, match=r"override '\*.bias' sends blocks.0.0.bias \(shape \(48,\)\) to Muon"):
        ravine.muon_param_groups(model, overrides={"*.bias": "muon"})
    with pytest.raises(ValueError, match=r"overrides\['head.\*'\] must be 'muon' or 'adamw', not 'sgd'"):
        ravine.muon_param_groups(model, overrides={"head.*": "sgd"})


def test_the_table_lists_every_parameter_with_its_group_lr_and_decay():
    model = TinyLM()
    text = ravine.muon_param_groups(model, lr=0.05, adam_lr=1e-3, weight_decay=0.1).table()
    lines = text.splitlines()
    assert lines[0].split() == ["name", "shape", "group", "lr", "weight", "decay", "why"]
    embed = next(line for line in lines if line.startswith("embed.weight"))
    assert embed.split()[:5] == ["embed.weight", "40×24", "AdamW", "0.001", "0"]
    square = next(line for line in lines if line.startswith("square.weight"))
    assert square.split()[:5] == ["square.weight", "24×24", "Muon", "0.05", "0.1"]
    assert lines[-1] == "5 parameters to Muon, 9 to AdamW"

"""Bad input: every invalid hyperparameter raises ValueError naming the argument and the value."""

from __future__ import annotations

import re

import pytest
import torch

import ravine

p = torch.zeros(2, requires_grad=True)

BAD = [
    (ravine.SGD, {"lr": -0.1}, "Invalid learning rate: -0.1 (lr"),
    (ravine.SGD, {"momentum": -0.5}, "Invalid momentum value: -0.5 (momentum"),
    (ravine.SGD, {"weight_decay": -1}, "Invalid weight_decay value: -1 (weight_decay"),
    (ravine.SGD, {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    (ravine.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening=0.1"),
    (ravine.Adagrad, {"lr_decay": -0.5}, "Invalid lr_decay value: -0.5 (lr_decay"),
    (ravine.Adagrad, {"eps": -1e-3}, "Invalid epsilon value: -0.001 (eps"),
    (ravine.Adagrad, {"initial_accumulator_value": -1}, "Invalid initial_accumulator_value value: -1"),
    (ravine.RMSprop, {"momentum": -1.0}, "Invalid momentum value: -1.0 (momentum"),
    (ravine.RMSprop, {"alpha": -0.1}, "Invalid alpha value: -0.1 (alpha"),
    (ravine.Adam, {"betas": (1.0, 0.0)}, "Invalid beta parameter at index 0: 1.0 (betas[0]"),
    (ravine.Adam, {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1 (betas[1]"),
    (ravine.Adam, {"eps_root": -1.0}, "Invalid eps_root value: -1.0 (eps_root"),
    (ravine.AdamW, {"weight_decay": -1}, "Invalid weight_decay value: -1"),
    (ravine.Adam, {"lr": torch.tensor([0.001, 0.001])}, "Tensor lr must be 1-element"),
    (ravine.Adam, {"betas": (0.9, torch.tensor(0.99))}, "betas must be either both floats or both Tensors"),
    (ravine.Lion, {"lr": -1e-4}, "Invalid learning rate: -0.0001"),
    (ravine.Lion, {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    (ravine.Lion, {"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    (ravine.ADOPT, {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    (ravine.ADOPT, {"betas": (-0.1, 0.9)}, "Invalid beta parameter at index 0: -0.1"),
    (ravine.ADOPT, {"clip_lambda": 3}, "Invalid clip_lambda: 3"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD, ids=[f"{c.__name__}-{list(k)[-1]}" for c, k, _ in BAD])
def test_invalid_hyperparameters_raise_value_error_naming_them(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls([p], **kwargs)


@pytest.mark.parametrize("cls", [ravine.SGD, ravine.Adam, ravine.Lion])
def test_parameter_list_errors_match_torch(cls):
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable"):
        cls(p)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        cls([])
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        cls([p, p])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        cls([{"params": [p]}, {"params": [p]}])
    cls([{"params": []}, {"params": [p]}])  # empty groups are accepted (ZeroRedundancyOptimizer needs it)


def test_fused_and_foreach_together_are_refused_like_torch():
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        ravine.AdamW([p], fused=True, foreach=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "Invalid k value: 0"),
        ({"k": 2.5}, "Invalid k value: 2.5"),
        ({"alpha": 1.5}, "Invalid alpha value: 1.5 (alpha must be in [0, 1])"),
        ({"alpha": -0.1}, "Invalid alpha value: -0.1"),
    ],
)
def test_lookahead_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ravine.Lookahead(ravine.SGD([p]), **kwargs)


def test_lookahead_rejects_a_non_optimizer():
    with pytest.raises(ValueError, match="Invalid optimizer"):
        ravine.Lookahead([p])  # type: ignore[arg-type]

"""Descriptions of every ravine optimizer for the generic contract tests, in the spirit of torch's OptimizerInfo.

Each :class:`OptimizerInfo` lists valid configurations (hyperparameters only: the implementation flags
``foreach``/``fused`` never appear in them, as in torch's harness, and are expanded separately), invalid ones
with the error type and message, and what the optimizer supports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import ravine

PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}


@dataclass(frozen=True)
class ErrorInput:
    kwargs: dict[str, Any]
    error: type[Exception]
    regex: str


@dataclass(frozen=True)
class OptimizerInfo:
    cls: type[torch.optim.Optimizer]
    configs: list[dict[str, Any]]
    errors: list[ErrorInput]
    supports_complex: bool = True
    supports_sparse: bool = False
    paths: tuple[str, ...] = tuple(PATHS)
    decoupled_decay: bool = False  # weight decay acts on p directly (zero grads still move p)
    lr_bounds_step: bool = True  # a tiny lr keeps every step tiny (not Rprop's: lr is only its first step size)
    tensor_lr_with_foreach: bool = True  # torch's Adam/AdamW refuse a Tensor lr with foreach=True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.__name__


def _common_errors() -> list[ErrorInput]:
    return [
        ErrorInput({"lr": "0.1"}, TypeError, r"Invalid learning rate: '0.1' \(lr must be a number, not str\)"),
        ErrorInput({"lr": -1.0}, ValueError, r"Invalid learning rate: -1.0 \(lr must be >= 0\)"),
        ErrorInput({"weight_decay": -0.5}, ValueError, r"Invalid weight_decay value: -0.5"),
        ErrorInput({"lr": torch.tensor([1e-3, 1e-3])}, ValueError, "Tensor lr must be 1-element"),
        ErrorInput({"state_dtype": "int32"}, ValueError, r"Invalid state_dtype: 'int32'"),
        ErrorInput({"foreach": True, "fused": True}, RuntimeError,
                   "`fused` and `foreach` cannot be `True` together"),
    ]


def _beta_errors() -> list[ErrorInput]:
    return [
        ErrorInput({"betas": (1.0, 0.5)}, ValueError, r"Invalid beta parameter at index 0: 1.0"),
        ErrorInput({"betas": (0.5, -0.1)}, ValueError, r"Invalid beta parameter at index 1: -0.1"),
    ]


def _adam_errors() -> list[ErrorInput]:
    """torch's Adam/AdamW rules: no Tensor lr or beta with foreach=True; betas both floats or both Tensors."""
    return [
        ErrorInput({"lr": torch.tensor(1e-3), "foreach": True}, ValueError,
                   "lr as a Tensor is not supported for capturable=False and foreach=True"),
        ErrorInput({"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True}, ValueError,
                   r"betas\[0\] as a Tensor is not supported for capturable=False and foreach=True"),
        ErrorInput({"betas": (0, 0.99)}, ValueError, "betas must be either both floats or both Tensors"),
    ]


OPTIMIZERS = [
    OptimizerInfo(
        ravine.SGD,
        configs=[{"lr": 1e-2}, {"lr": 1e-2, "momentum": 0.9}, {"lr": 1e-2, "momentum": 0.9, "dampening": 0.5},
                 {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
                 {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}],
        errors=[*_common_errors(),
                ErrorInput({"momentum": -0.5}, ValueError, r"Invalid momentum value: -0.5"),
                ErrorInput({"nesterov": True}, ValueError,
                           "Nesterov momentum requires a momentum and zero dampening")],
        supports_sparse=True,
    ),
    OptimizerInfo(
        ravine.Adagrad,
        configs=[{}, {"weight_decay": 0.1}, {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
                 {"initial_accumulator_value": 0.1, "maximize": True}],
        errors=[*_common_errors(),
                ErrorInput({"lr_decay": -0.5}, ValueError, r"Invalid lr_decay value: -0.5"),
                ErrorInput({"eps": -1.0}, ValueError, r"Invalid epsilon value: -1.0")],
        supports_sparse=True,
    ),
    OptimizerInfo(
        ravine.RMSprop,
        configs=[{"lr": 1e-3}, {"lr": 1e-3, "centered": True, "weight_decay": 0.1},
                 {"lr": 1e-3, "centered": True, "momentum": 0.1, "maximize": True},
                 {"lr": 1e-3, "bias_correction": True, "momentum": 0.5}],
        errors=[*_common_errors(),
                ErrorInput({"momentum": -1.0}, ValueError, r"Invalid momentum value: -1.0"),
                ErrorInput({"alpha": -0.1}, ValueError, r"Invalid alpha value: -0.1")],
    ),
    OptimizerInfo(
        ravine.Adam,
        configs=[{}, {"lr": 1e-2}, {"weight_decay": 0.1, "maximize": True}, {"weight_decay": 0.1, "amsgrad": True},
                 {"eps_root": 1e-8}],
        errors=[*_common_errors(), *_beta_errors(), *_adam_errors(),
                ErrorInput({"eps_root": -1.0}, ValueError, r"Invalid eps_root value: -1.0")],
        tensor_lr_with_foreach=False,
    ),
    OptimizerInfo(
        ravine.AdamW,
        configs=[{}, {"lr": 1e-2}, {"weight_decay": 0.1, "maximize": True}, {"amsgrad": True}],
        errors=[*_common_errors(), *_beta_errors(), *_adam_errors()],
        decoupled_decay=True,
        tensor_lr_with_foreach=False,
    ),
    OptimizerInfo(
        ravine.Lion,
        configs=[{}, {"lr": 1e-3, "weight_decay": 0.1}, {"lr": 1e-3, "betas": (0.95, 0.98), "maximize": True}],
        errors=[*_common_errors(), *_beta_errors()],
        decoupled_decay=True,
    ),
    OptimizerInfo(
        ravine.ADOPT,
        configs=[{}, {"lr": 1e-2, "weight_decay": 0.1}, {"weight_decay": 0.1, "decouple": True},
                 {"clip_lambda": None, "maximize": True}],
        errors=[*_common_errors(), *_beta_errors(),
                ErrorInput({"eps": -1e-3}, ValueError, r"Invalid epsilon value: -0.001"),
                ErrorInput({"clip_lambda": "x"}, ValueError, r"Invalid clip_lambda: 'x'")],
    ),
]

OPTIMIZERS += [
    OptimizerInfo(
        ravine.Adadelta,
        configs=[{}, {"lr": 0.5, "weight_decay": 0.1}, {"rho": 0.5, "maximize": True}],
        errors=[*_common_errors(),
                ErrorInput({"rho": 1.5}, ValueError, r"Invalid rho value: 1.5"),
                ErrorInput({"eps": -1.0}, ValueError, r"Invalid epsilon value: -1.0")],
    ),
    OptimizerInfo(
        ravine.Adamax,
        configs=[{}, {"lr": 1e-2, "weight_decay": 0.1}, {"maximize": True}],
        errors=[*_common_errors(), *_beta_errors()],
    ),
    OptimizerInfo(
        ravine.ASGD,
        configs=[{}, {"lr": 1e-2, "weight_decay": 0.1, "t0": 3.0, "lambd": 1e-2}, {"maximize": True, "t0": 2.0}],
        errors=_common_errors(),
    ),
    OptimizerInfo(
        ravine.NAdam,
        configs=[{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
                 {"momentum_decay": 0.1, "maximize": True}],
        errors=[*_common_errors(), *_beta_errors(),
                ErrorInput({"momentum_decay": -0.1}, ValueError, r"Invalid momentum_decay value: -0.1")],
    ),
    OptimizerInfo(
        ravine.RAdam,
        configs=[{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
                 {"betas": (0.8, 0.9), "maximize": True}],
        errors=[*_common_errors(), *_beta_errors()],
    ),
    OptimizerInfo(
        ravine.Rprop,
        configs=[{}, {"etas": (0.3, 1.5)}, {"step_sizes": (1e-3, 0.05), "maximize": True}],
        errors=[*(e for e in _common_errors() if "weight_decay" not in e.kwargs),
                ErrorInput({"etas": (1.5, 1.2)}, ValueError, r"Invalid eta values: 1.5, 1.2")],
        lr_bounds_step=False,
    ),
    OptimizerInfo(
        ravine.Adafactor,
        configs=[{}, {"weight_decay": 0.1}, {"eps": (1e-20, 1e-2), "d": 2.0, "maximize": True}],
        errors=[ErrorInput({"lr": -1.0}, ValueError, r"Learning rate should be >= 0 but is: -1.0"),
                ErrorInput({"beta2_decay": 0.5}, ValueError, r"beta2_decay should be <= 0 but is: 0.5"),
                ErrorInput({"d": 0.5}, ValueError, r"Clipping threshold d should be >= 1 but is: 0.5"),
                ErrorInput({"weight_decay": -0.5}, ValueError, r"weight_decay should be >= 0 but is: -0.5"),
                ErrorInput({"fused": True}, ValueError, r"Adafactor\(fused=True\) is not available")],
        supports_complex=False,
        paths=("per-tensor", "multi-tensor"),
        decoupled_decay=True,
    ),
]

IDS = [info.name for info in OPTIMIZERS]


def configs_with_paths(infos=OPTIMIZERS, paths=("per-tensor", "multi-tensor")):
    """(info, config) pairs with each implementation flag set on its own, as torch's harness expands them."""
    for info in infos:
        for index, config in enumerate(info.configs):
            for path in paths:
                if path in info.paths:
                    yield info, {**config, **PATHS[path]}, f"{info.name}-{index}-{path}"

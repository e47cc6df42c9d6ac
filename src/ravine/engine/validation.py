"""Hyperparameter checks shared by every optimizer.

Messages start with torch.optim's wording (``Invalid learning rate: -1``), which PyTorch's own test suite
matches by regex, and then name the argument and the accepted range.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_LABELS = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "weight_decay": "weight_decay value",
    "momentum": "momentum value",
    "lr_decay": "lr_decay value",
    "alpha": "alpha value",
    "initial_accumulator_value": "initial_accumulator_value value",
    "eps_root": "eps_root value",
}


def _number(value: Any, name: str = "value") -> float:
    """``value`` as a float, or a TypeError naming the argument (torch rejects non-numbers at construction)."""
    if isinstance(value, Tensor):
        return float(value.item())
    if isinstance(value, (int, float)):  # bool is an int, as in torch
        return float(value)
    label = _LABELS.get(name, f"{name} value")
    raise TypeError(f"Invalid {label}: {value!r} ({name} must be a number, not {type(value).__name__})")


def check_numbers(**values: Any) -> None:
    """Each argument a number (a one-element tensor counts), or a TypeError naming it and its value. For
    constructors whose range checks keep torch's own wording: the type is checked first, with the name."""
    for name, value in values.items():
        _number(value, name)


def check_lr(lr: float | Tensor) -> None:
    """lr ≥ 0; a tensor lr must hold exactly one element."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    check_non_negative("lr", lr)


def check_non_negative(name: str, value: float | Tensor) -> None:
    if not 0.0 <= _number(value, name):
        label = _LABELS.get(name, f"{name} value")
        raise ValueError(f"Invalid {label}: {value} ({name} must be >= 0)")


def check_unit_interval(name: str, value: float, *, closed: bool = True) -> None:
    """0 ≤ value ≤ 1 (or < 1 when ``closed`` is False)."""
    number = _number(value, name)
    inside = 0.0 <= number <= 1.0 if closed else 0.0 <= number < 1.0
    if not inside:
        label = _LABELS.get(name, f"{name} value")
        bound = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"Invalid {label}: {value} ({name} must be in {bound})")


def check_betas(betas: tuple[float, float]) -> None:
    """Two coefficients, each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (betas must be a pair (beta1, beta2))")
    if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
        raise ValueError("betas must be either both floats or both Tensors")
    for index, beta in enumerate(betas):
        if not 0.0 <= _number(beta, f"betas[{index}]") < 1.0:
            raise ValueError(
                f"Invalid beta parameter at index {index}: {beta} (betas[{index}] must be in [0, 1))"
            )


def check_adam_family(lr: float | Tensor, eps: float, betas: tuple[float, float], weight_decay: float) -> None:
    """lr, eps, betas and weight_decay, in the order torch's Adam, Adamax, NAdam and RAdam check them (so the
    first bad argument is the one reported, as in torch)."""
    check_lr(lr)
    check_non_negative("eps", eps)
    check_betas(betas)
    check_non_negative("weight_decay", weight_decay)


def check_fused_flags(foreach: bool | None, fused: bool | None) -> None:
    """The implementation flags, with torch's rules and messages."""
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def check_state_dtype(state_dtype: Any) -> str | None:
    """None, a floating dtype (``torch.bfloat16`` or ``"bfloat16"``) or ``"int8"``; returned as a name for the
    groups."""
    if state_dtype is None:
        return None
    name = str(state_dtype).removeprefix("torch.")
    if name == "int8":
        return name
    if not isinstance(getattr(torch, name, None), torch.dtype) or not getattr(torch, name).is_floating_point:
        raise ValueError(f"Invalid state_dtype: {state_dtype!r} (state_dtype must be None, a floating dtype "
                         "such as torch.bfloat16, or 'int8')")
    return name


def check_tensor_hyperparameters_without_foreach(name: str, foreach: bool | None, lr: Any,
                                                betas: tuple[Any, Any] | None = None) -> None:
    """torch's Adam/AdamW rule: a Tensor lr or beta is refused with ``foreach=True`` (ravine has no capturable)."""
    if not foreach:
        return
    if isinstance(lr, Tensor):
        raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
    for index, beta in enumerate(betas or ()):
        if isinstance(beta, Tensor):
            raise ValueError(f"betas[{index}] as a Tensor is not supported for capturable=False and foreach=True")

"""``differentiable=True``: the step as a function autograd can differentiate (meta-learning, learned lrs).

The per-tensor path runs with gradients enabled, and the update sees :class:`DiffTensor` stand-ins instead of
tensors: the same methods as the other paths (a test checks the surfaces agree), a tensor ``alpha=``/``value=``
folded into a multiplication (ATen only takes numbers there), and every in-place method done out of place, so
no value autograd saved for the backward pass is overwritten (``v.sqrt().div_(c)`` would break sqrt's
gradient). When the update has run, parameters and state receive their new values in place (``copy_``, which
autograd records), as torch's differentiable mode updates them. Tensor hyperparameters stay tensors, so the
step is differentiable with respect to parameters, gradients, state and hyperparameters alike.
"""

from __future__ import annotations

from typing import Any

import torch

from ravine.engine.tracing import FusedTensor, _like, _raw
from ravine.engine.views import real_view


def _functional(name: str):
    """``x.<name>_(...)`` as ``x ← x.<name>(...)``: a new tensor, bound to the same stand-in."""
    out_of_place = getattr(FusedTensor, name)

    def method(self: DiffTensor, *args: Any, **kwargs: Any) -> DiffTensor:
        self.t = out_of_place(self, *args, **kwargs).t
        return self

    method.__name__ = f"{name}_"
    return method


class DiffTensor(FusedTensor):
    """A tensor in a differentiable step: the fused stand-in's methods, the in-place ones done out of place."""

    __slots__ = ()

    add_ = _functional("add")
    sub_ = _functional("sub")
    mul_ = _functional("mul")
    div_ = _functional("div")
    addcmul_ = _functional("addcmul")
    addcdiv_ = _functional("addcdiv")
    lerp_ = _functional("lerp")
    neg_ = _functional("neg")
    sqrt_ = _functional("sqrt")
    sign_ = _functional("sign")
    sgn_ = sign_
    clamp_min_ = _functional("clamp_min")
    clamp_max_ = _functional("clamp_max")
    reciprocal_ = _functional("reciprocal")
    masked_fill_ = _functional("masked_fill")

    def zero_(self) -> DiffTensor:
        self.t = torch.zeros_like(self.t)
        return self

    def fill_(self, value: Any) -> DiffTensor:
        self.t = torch.zeros_like(self.t) + _like(value, self.t)
        return self

    def copy_(self, other: Any) -> DiffTensor:
        self.t = torch.zeros_like(self.t) + _raw(other)
        return self

    def clamp_(self, min: Any = None, max: Any = None) -> DiffTensor:
        if min is not None:
            self.clamp_min_(min)
        if max is not None:
            self.clamp_max_(max)
        return self


class DiffState:
    """``state`` inside a differentiable step: one stand-in per key; assigning a new key creates state."""

    def __init__(self, state: dict[str, Any], scalar_keys: tuple[str, ...], *, is_complex: bool = False) -> None:
        # copies: the graph must not read the tensors that write_back() overwrites in place
        wrapped = {k: DiffTensor(real_view(v).clone()) for k, v in state.items()
                   if torch.is_tensor(v) and k != "step" and k not in scalar_keys}
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_complex", is_complex)

    def __getattr__(self, key: str) -> Any:
        wrapped = self._wrapped.get(key)
        if wrapped is not None:
            return wrapped
        return self._state.get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self._wrapped[key] = value if isinstance(value, DiffTensor) else DiffTensor(value)

    def __contains__(self, key: str) -> bool:
        return key in self._wrapped or key in self._state

    def write_back(self) -> None:
        """New values into the existing state tensors, in place (autograd records it); new keys are stored."""
        for key, wrapped in self._wrapped.items():
            current = self._state.get(key)
            if current is None:
                self._state[key] = torch.view_as_complex(wrapped.t) if self._complex else wrapped.t
            else:
                real_view(current).copy_(wrapped.t)

"""What an algorithm's ``update`` sees: its state and its hyperparameters, as plain attributes.

:class:`StateView` presents the state of one parameter (as tensors) or of a batch of parameters (as
:class:`~ravine.engine.tensorlist.TensorList`) under the same attribute names, so the update reads
``state.exp_avg`` either way. Complex parameters are presented as real views, so every element-wise
algorithm treats real and imaginary parts as independent coordinates, as torch does.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ravine.engine.tensorlist import TensorList


def real_view(t: Tensor) -> Tensor:
    """``t`` seen as a real tensor (complex ``(…)`` becomes real ``(…, 2)``); sparse tensors unchanged."""
    return torch.view_as_real(t) if t.is_complex() and not t.is_sparse else t


class StateView:
    """Attribute access to the per-parameter state dicts of a single parameter or of a batch.

    Reading a key that is not in the state gives ``None``; assigning a tensor (or TensorList) stores it for
    every parameter of the view, converted back to complex where the parameter is complex.
    """

    __slots__ = ("_batched", "_complex", "_dicts")

    def __init__(self, dicts: list[dict[str, Any]], *, is_complex: bool, batched: bool) -> None:
        object.__setattr__(self, "_dicts", dicts)
        object.__setattr__(self, "_complex", is_complex)
        object.__setattr__(self, "_batched", batched)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):  # slots not yet set (e.g. while torch.compile rebuilds the object)
            raise AttributeError(key)
        values = [d.get(key) for d in self._dicts]
        if values[0] is None:
            return None
        if self._complex:
            values = [real_view(v) for v in values]
        return TensorList(values) if self._batched else values[0]

    def __setattr__(self, key: str, value: Tensor | TensorList) -> None:
        values = value.tensors if isinstance(value, TensorList) else [value]
        if len(values) != len(self._dicts):
            raise ValueError(f"state.{key}: expected {len(self._dicts)} tensors, got {len(values)}")
        for d, v in zip(self._dicts, values, strict=True):
            d[key] = torch.view_as_complex(v) if self._complex and not v.is_complex() else v

    def __contains__(self, key: str) -> bool:
        return key in self._dicts[0]



class TensorState:
    """The state of one real parameter, as :class:`StateView` presents it: the common case of the per-tensor
    path. The state dict itself is the object's ``__dict__``, so reading ``state.exp_avg`` is one dict lookup
    and assigning one stores it: models of many small tensors feel every microsecond spent between kernels.
    A key that is not in the state reads as None."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.__dict__ = state

    def __getattr__(self, key: str) -> Any:  # only called for keys missing from the state
        if key[0] == "_":
            raise AttributeError(key)
        return None

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

def value_of(x: Tensor | TensorList) -> Any:
    """The Python number in a 0-d state tensor, or in the first of a batch's (a batch shares its values); the
    tensor itself when it carries a gradient (``differentiable=True``), so the step stays differentiable."""
    t = x.tensors[0] if isinstance(x, TensorList) else x
    return t if t.requires_grad and torch.is_grad_enabled() else t.item()


def as_scalar_tensor(value: Any) -> Any:
    """A one-element tensor as a 0-d tensor (gradient kept), so that shape (1, 1) does not broadcast."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.reshape(())
    if isinstance(value, tuple):
        return tuple(as_scalar_tensor(v) for v in value)
    return value


def scalar(value: Any) -> Any:
    """A hyperparameter as the eager paths use it: 1-element tensors become Python numbers."""
    if isinstance(value, Tensor):
        return value.item()
    if isinstance(value, tuple):
        return tuple(scalar(v) for v in value)
    return value


def merged(group: Mapping[str, Any]) -> dict[str, Any]:
    """A parameter group (a ``ChainMap`` over the class's defaults, see ``Optimizer.options``) as one dict, in
    the ChainMap's order; merged a mapping at a time, which a step over many groups or tensors notices."""
    if not isinstance(group, ChainMap):
        return dict(group)
    out: dict[str, Any] = {}
    for values in reversed(group.maps):
        out.update(values)
    return out


class Hyper:
    """A parameter group's hyperparameters as attributes (``hp.lr``, ``hp.betas``), plus ``hp.step``.

    ``step`` is the step count of the parameters being updated *after* this step's increment (1 on the
    first step), as a Python float, or ``None`` for algorithms without a step counter. ``batch_dims`` is the
    number of leading dimensions the engine stacked in front of the parameters' own (1 when a
    ``batched_update`` runs over same-shape parameters at once, else 0), so tensorwise math can tell a stack of
    matrices from a parameter with more dimensions.
    """

    def __init__(self, group: Mapping[str, Any]) -> None:
        keep_tensors = bool(group.get("differentiable"))  # a learned lr must stay in the graph
        for key, value in merged(group).items():
            if key != "params":
                setattr(self, key, as_scalar_tensor(value) if keep_tensors else scalar(value))
        self.step: float | None = None
        self.batch_dims = 0
        self.extra: dict[str, Any] = {}  # the group_scalars values, which the fused step takes as inputs

    def __getattr__(self, key: str) -> Any:  # only called for missing attributes
        raise AttributeError(f"this parameter group has no hyperparameter {key!r}")

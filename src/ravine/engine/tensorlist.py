"""A list of tensors that answers to the tensor methods optimizer math uses, via ``torch._foreach_*``.

An algorithm's update is written once with tensor methods (``exp_avg.lerp_(grad, 1 - beta1)``). Given plain
tensors it runs per tensor; given :class:`TensorList` objects the very same code runs as multi-tensor
(foreach) kernels over a whole batch of parameters. Only the methods listed here are available; an update
that needs another one fails loudly rather than silently falling back to a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor


def _unwrap(value: Any) -> Any:
    return value.tensors if isinstance(value, TensorList) else value


def _pick(value: Any, index: int) -> Any:
    return value.tensors[index] if isinstance(value, TensorList) else value


def _foreach(name: str, *, inplace: bool) -> Callable[..., TensorList]:
    """A method that applies ``torch._foreach_<name>[_]`` to the list and unwrapped arguments.

    DTensor keeps an allow-list of foreach ops with sharding strategies (``_foreach_sign_`` and the list
    form of ``_foreach_clamp_min_``, for instance, are missing); for DTensors without one, the same tensor
    method runs per tensor, which every element-wise op supports.
    """
    method_name = f"{name}{'_' if inplace else ''}"
    op = getattr(torch, f"_foreach_{method_name}")

    def method(self: TensorList, *args: Any, **kwargs: Any) -> TensorList:
        try:
            out = op(self.tensors, *map(_unwrap, args), **{k: _unwrap(v) for k, v in kwargs.items()})
        except NotImplementedError:
            if not self.tensors or type(self.tensors[0]) in (torch.Tensor, torch.nn.Parameter):
                raise
            out = [
                getattr(t, method_name)(
                    *(_pick(a, i) for a in args), **{k: _pick(v, i) for k, v in kwargs.items()}
                )
                for i, t in enumerate(self.tensors)
            ]
        return self if inplace else TensorList(out)

    method.__name__ = f"{name}{'_' if inplace else ''}"
    method.__doc__ = f"Multi-tensor ``Tensor.{method.__name__}`` (``torch._foreach_{method.__name__}``)."
    return method


class TensorList:
    """Tensors that are updated together, exposing Tensor-like methods backed by foreach kernels."""

    __slots__ = ("tensors",)

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        self.tensors: list[Tensor] = list(tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors)

    def __getitem__(self, index: int) -> Tensor:
        return self.tensors[index]

    def __repr__(self) -> str:
        return f"TensorList({len(self.tensors)} tensors)"

    # Arithmetic, out of place and in place, with a scalar, a 0-d tensor or another TensorList.
    add = _foreach("add", inplace=False)
    add_ = _foreach("add", inplace=True)
    sub = _foreach("sub", inplace=False)
    sub_ = _foreach("sub", inplace=True)
    mul = _foreach("mul", inplace=False)
    mul_ = _foreach("mul", inplace=True)
    div = _foreach("div", inplace=False)
    div_ = _foreach("div", inplace=True)
    addcmul = _foreach("addcmul", inplace=False)
    addcmul_ = _foreach("addcmul", inplace=True)
    addcdiv = _foreach("addcdiv", inplace=False)
    addcdiv_ = _foreach("addcdiv", inplace=True)
    lerp = _foreach("lerp", inplace=False)
    lerp_ = _foreach("lerp", inplace=True)
    # Unary maps.
    neg = _foreach("neg", inplace=False)
    neg_ = _foreach("neg", inplace=True)
    sqrt = _foreach("sqrt", inplace=False)
    sqrt_ = _foreach("sqrt", inplace=True)
    sign = _foreach("sign", inplace=False)
    sign_ = _foreach("sign", inplace=True)
    abs = _foreach("abs", inplace=False)
    zero_ = _foreach("zero", inplace=True)
    # Clamping (``clamp_min_`` with a TensorList is the elementwise maximum).
    clamp_min = _foreach("clamp_min", inplace=False)
    clamp_min_ = _foreach("clamp_min", inplace=True)
    clamp_max = _foreach("clamp_max", inplace=False)
    clamp_max_ = _foreach("clamp_max", inplace=True)
    copy_ = _foreach("copy", inplace=True)
    reciprocal = _foreach("reciprocal", inplace=False)
    reciprocal_ = _foreach("reciprocal", inplace=True)
    maximum = _foreach("maximum", inplace=False)

    # ``sgn`` is ``sign`` for real tensors; complex parameters reach the math as real views.
    sgn = sign
    sgn_ = sign_

    def clamp_(self, min: Any = None, max: Any = None) -> TensorList:
        """Multi-tensor ``Tensor.clamp_``."""
        if min is not None:
            self.clamp_min_(min)
        if max is not None:
            self.clamp_max_(max)
        return self

    # Comparisons and masked fills: no foreach kernels exist, so these loop over the tensors, as torch's own
    # multi-tensor Rprop does.
    def gt(self, other: Any) -> TensorList:
        """Multi-tensor ``Tensor.gt`` (a list of boolean masks)."""
        return TensorList([t.gt(_pick(other, i)) for i, t in enumerate(self.tensors)])

    def lt(self, other: Any) -> TensorList:
        """Multi-tensor ``Tensor.lt`` (a list of boolean masks)."""
        return TensorList([t.lt(_pick(other, i)) for i, t in enumerate(self.tensors)])

    def eq(self, other: Any) -> TensorList:
        """Multi-tensor ``Tensor.eq`` (a list of boolean masks)."""
        return TensorList([t.eq(_pick(other, i)) for i, t in enumerate(self.tensors)])

    def masked_fill(self, mask: TensorList, value: Any) -> TensorList:
        """Multi-tensor ``Tensor.masked_fill``."""
        return TensorList([t.masked_fill(_pick(mask, i), value) for i, t in enumerate(self.tensors)])

    def masked_fill_(self, mask: TensorList, value: Any) -> TensorList:
        """Multi-tensor ``Tensor.masked_fill_``."""
        for i, t in enumerate(self.tensors):
            t.masked_fill_(_pick(mask, i), value)
        return self

    def fill_(self, value: Any) -> TensorList:
        """Multi-tensor ``Tensor.fill_`` (every tensor set to one number)."""
        for t in self.tensors:
            t.fill_(value)
        return self

    # Whole-tensor reductions: one 0-d tensor per tensor, which broadcasts in foreach arithmetic.
    def norm(self) -> TensorList:
        """Each tensor's L2 norm (``torch._foreach_norm``)."""
        return TensorList(torch._foreach_norm(self.tensors))

    def amax(self) -> TensorList:
        """Each tensor's maximum (``torch._foreach_max``)."""
        return TensorList(torch._foreach_max(self.tensors))

    def sum(self) -> TensorList:
        """Each tensor's sum."""
        return TensorList([t.sum() for t in self.tensors])

    def mean(self) -> TensorList:
        """Each tensor's mean."""
        return TensorList([t.mean() for t in self.tensors])

    def numel(self) -> TensorList:
        """Each tensor's element count, as a 0-d tensor of its dtype (it broadcasts like a reduction)."""
        return TensorList([t.new_tensor(float(t.numel())) for t in self.tensors])

    def clone(self) -> TensorList:
        """Multi-tensor ``Tensor.clone``."""
        return TensorList([t.clone() for t in self.tensors])

    def __neg__(self) -> TensorList:
        return self.neg()


Maths = Tensor | TensorList
"""What an update receives for a parameter, its gradient or a state tensor: one tensor or a batch."""


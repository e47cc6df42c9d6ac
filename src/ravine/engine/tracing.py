"""What an algorithm's ``update`` sees inside the compiled (fused) step: stand-ins for tensors, state and hp.

No algorithm is written twice. ``torch.compile`` traces the very ``update`` method the eager paths run, with
thin wrappers standing in for its arguments:

* :class:`FusedTensor` wraps a flat buffer and offers the same tensor methods as
  :class:`~ravine.engine.tensorlist.TensorList` (a test checks the two lists agree); a tensor
  ``alpha=``/``value=`` (which ATen only takes as a Python number) is folded into a multiplication.
* :class:`HyperScalar` wraps a hyperparameter held as a 0-d tensor. Arithmetic gives tensors, so a schedule
  that changes lr, betas or weight decay every step never recompiles; comparisons with 0 and 1
  (``if hp.weight_decay != 0``) read flags computed outside the graph, so only a change in such a branch
  (weight decay switched on, say) compiles a second graph. Values an algorithm must branch on in other ways
  come from its eager :meth:`~ravine.Optimizer.step_scalars` hook as booleans.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ravine.engine import compact
from ravine.engine.flat import BLOCK, SegmentLayout


def _raw(value: Any) -> Any:
    if isinstance(value, FusedTensor):
        return value.t
    if isinstance(value, HyperScalar):
        return value.t
    return value


# An opaque copy: inductor cannot inline what computes ``x`` into the kernels that read it. Defined with a plain
# CompositeExplicitAutograd kernel rather than ``torch.library.custom_op``, whose autograd wrapper the fused step
# paid at each derived hyperparameter: a fused step of one tiny tensor took 177-180 µs with it and 145-150 µs
# without (benchmarks/fused_call_overhead.py, one thread), which small models feel.
_LIBRARY = torch.library.Library("ravine", "FRAGMENT")
_LIBRARY.define("materialize(Tensor x) -> Tensor")
_LIBRARY.impl("materialize", lambda x: x.clone(), "CompositeExplicitAutograd")
torch.library.register_fake("ravine::materialize", lambda x: torch.empty_like(x), lib=_LIBRARY)
materialize = torch.ops.ravine.materialize.default


def _like(value: Any, t: Tensor) -> Any:
    """``value`` ready to meet buffer ``t``.

    A hyperparameter (float64, for scalar arithmetic as exact as the eager paths' Python floats) is cast to
    the buffer's dtype, so per-element math stays in the buffer's precision. A *derived* one (``lr/(1−β₁ᵗ)``)
    is materialised first: otherwise inductor inlines its scalar math (``pow``, ``sqrt``, which the C++
    compiler may not hoist) into every iteration of the vector loop.
    """
    if isinstance(value, HyperScalar):
        scalar = value.t.to(t.dtype)
        return materialize(scalar) if value.derived else scalar
    return _raw(value)


def _scaled(other: Any, factor: Any) -> Any:
    """``other·factor`` without a multiplication when the factor is the literal 1."""
    other = _raw(other)
    if isinstance(factor, (int, float)) and factor == 1:
        return other
    return other * _like(factor, other)


class HyperScalar:
    """A hyperparameter inside the compiled step: a 0-d tensor with static zero/one flags for branching."""

    __slots__ = ("derived", "flags", "key", "t")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, t: Tensor, flags: dict[str, bool], key: str, derived: bool = False) -> None:
        self.t, self.flags, self.key, self.derived = t, flags, key, derived

    def _flag(self, other: Any) -> bool:
        if isinstance(other, (int, float)) and other in (0, 1) and f"{self.key}=={int(other)}" in self.flags:
            return self.flags[f"{self.key}=={int(other)}"]
        raise TypeError(f"{self.key} can only be compared with 0 or 1 in a fused step (got {other!r})")

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return self._flag(other)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return not self._flag(other)

    def __gt__(self, other: Any) -> bool:  # hyperparameters are validated non-negative
        if other != 0:
            raise TypeError(f"{self.key} can only be compared with 0 in a fused step (got {other!r})")
        return not self._flag(0)

    def __bool__(self) -> bool:
        return not self._flag(0)

    # Arithmetic stays inside HyperScalar: dynamo traces operators between two user objects (or one and a
    # Python number), not between a user object and a tensor. Derived values cannot be compared.
    def _derived(self, t: Tensor) -> HyperScalar:
        return HyperScalar(t, {}, f"an expression of {self.key}", derived=True)

    def __neg__(self) -> HyperScalar:
        return self._derived(-self.t)

    def __add__(self, o: Any) -> HyperScalar:
        return self._derived(self.t + _raw(o))

    def __radd__(self, o: Any) -> HyperScalar:
        return self._derived(_raw(o) + self.t)

    def __sub__(self, o: Any) -> HyperScalar:
        return self._derived(self.t - _raw(o))

    def __rsub__(self, o: Any) -> HyperScalar:
        return self._derived(_raw(o) - self.t)

    def __mul__(self, o: Any) -> HyperScalar:
        return self._derived(self.t * _raw(o))

    def __rmul__(self, o: Any) -> HyperScalar:
        return self._derived(_raw(o) * self.t)

    def __truediv__(self, o: Any) -> HyperScalar:
        return self._derived(self.t / _raw(o))

    def __rtruediv__(self, o: Any) -> HyperScalar:
        return self._derived(_raw(o) / self.t)

    def __pow__(self, o: Any) -> HyperScalar:
        return self._derived(self.t ** _raw(o))

    def __rpow__(self, o: Any) -> HyperScalar:
        return self._derived(_raw(o) ** self.t)


class FusedHyper:
    """``hp`` inside the compiled step: numbers are :class:`HyperScalar`, flags stay Python values."""

    def __init__(self, scalars: dict[str, Any], statics: dict[str, Any], flags: dict[str, bool]) -> None:
        for key, value in statics.items():
            setattr(self, key, value)
        for key, value in scalars.items():
            if isinstance(value, tuple):
                setattr(self, key, tuple(HyperScalar(v, flags, f"{key}[{i}]") for i, v in enumerate(value)))
            else:
                setattr(self, key, HyperScalar(value, flags, key))


def _out(method: Callable[..., Any]) -> Callable[..., FusedTensor]:
    @functools.wraps(method)
    def wrapper(self: FusedTensor, *args: Any, **kwargs: Any) -> FusedTensor:
        return type(self)(method(self, *args, **kwargs), self.layout)  # a subclass stays itself

    return wrapper


def _in_place(method: Callable[..., Any]) -> Callable[..., FusedTensor]:
    @functools.wraps(method)
    def wrapper(self: FusedTensor, *args: Any, **kwargs: Any) -> FusedTensor:
        method(self, *args, **kwargs)
        return self

    return wrapper


class FusedTensor:
    """A flat buffer inside the compiled step, answering to the tensor methods the algorithms use.

    ``layout`` is the buffer's :class:`~ravine.engine.flat.SegmentLayout` for algorithms that declare
    ``reductions``: the buffer is then a ``(rows, BLOCK)`` matrix whose rows each belong to one tensor, and a
    whole-tensor reduction (``norm``, ``sum``, ``mean``, ``amax``) is a reduction over rows finished by a segment
    reduction (no Python loop), seen by each element of its tensor through its row.
    """

    __slots__ = ("layout", "t")

    def __init__(self, t: Tensor, layout: SegmentLayout | None = None) -> None:
        self.t, self.layout = t, layout

    def _segments(self) -> SegmentLayout:
        if self.layout is None:
            raise RuntimeError("a whole-tensor reduction in a fused step needs the optimizer class to declare "
                               "`reductions = True`")
        return self.layout

    def _per_tensor(self, values: Tensor) -> FusedTensor:
        """One value per tensor, seen by each of its elements: one value per row, broadcast along it.

        The values are materialised first: inductor would otherwise recompute them from the row reductions at
        every element of the vector loop that reads them.
        """
        layout = self._segments()
        if layout.rows is None:  # one tensor: one value
            return type(self)(materialize(values.reshape(())), self.layout)
        return type(self)(materialize(values)[layout.rows][:, None], self.layout)

    def _segment_reduce(self, x: Tensor, how: str) -> Tensor:
        """Each tensor's ``"sum"`` or ``"max"`` of ``x`` (a buffer laid out as this one)."""
        layout = self._segments()
        if layout.rows is None:  # (the maximum of an empty tensor is -inf, as on the other paths)
            if how == "sum":
                return x.sum()
            return torch.segment_reduce(x, "max", lengths=layout.counts.to(torch.int64), initial=float("-inf"))
        identity = 0.0 if how == "sum" else float("-inf")
        lane = torch.arange(BLOCK, dtype=layout.row_valid.dtype, device=x.device)
        own = torch.where(lane < layout.row_valid, x, identity)  # a row's padding takes no part
        by_row = own.sum(1) if how == "sum" else own.amax(1)
        return torch.segment_reduce(by_row, how, lengths=layout.row_counts, initial=identity)

    def norm(self) -> FusedTensor:
        """Each tensor's L2 norm (a segment reduction)."""
        return self._per_tensor(self._segment_reduce(self.t * self.t, "sum").sqrt())

    def sum(self) -> FusedTensor:
        """Each tensor's sum (a segment reduction)."""
        return self._per_tensor(self._segment_reduce(self.t, "sum"))

    def mean(self) -> FusedTensor:
        """Each tensor's mean (a segment reduction)."""
        return self._per_tensor(self._segment_reduce(self.t, "sum") / self._segments().counts.to(self.t.dtype))

    def numel(self) -> FusedTensor:
        """Each tensor's element count, at every element of the tensor."""
        return self._per_tensor(self._segments().counts.to(self.t.dtype))

    def amax(self) -> FusedTensor:
        """Each tensor's maximum (a segment reduction)."""
        return self._per_tensor(self._segment_reduce(self.t, "max"))

    @_out
    def add(self, other: Any, alpha: Any = 1) -> Tensor:
        return self.t + _scaled(other, alpha)

    @_in_place
    def add_(self, other: Any, alpha: Any = 1) -> None:
        self.t.add_(_scaled(other, alpha))

    @_out
    def sub(self, other: Any, alpha: Any = 1) -> Tensor:
        return self.t - _scaled(other, alpha)

    @_in_place
    def sub_(self, other: Any, alpha: Any = 1) -> None:
        self.t.sub_(_scaled(other, alpha))

    @_out
    def mul(self, other: Any) -> Tensor:
        return self.t * _like(other, self.t)

    @_in_place
    def mul_(self, other: Any) -> None:
        self.t.mul_(_like(other, self.t))

    @_out
    def div(self, other: Any) -> Tensor:
        return self.t / _like(other, self.t)

    @_in_place
    def div_(self, other: Any) -> None:
        self.t.div_(_like(other, self.t))

    @_out
    def addcmul(self, t1: Any, t2: Any, value: Any = 1) -> Tensor:
        return self.t + _scaled(_raw(t1) * _raw(t2), value)

    @_in_place
    def addcmul_(self, t1: Any, t2: Any, value: Any = 1) -> None:
        self.t.add_(_scaled(_raw(t1) * _raw(t2), value))

    @_out
    def addcdiv(self, t1: Any, t2: Any, value: Any = 1) -> Tensor:
        return self.t + _scaled(_raw(t1) / _raw(t2), value)

    @_in_place
    def addcdiv_(self, t1: Any, t2: Any, value: Any = 1) -> None:
        self.t.add_(_scaled(_raw(t1) / _raw(t2), value))

    @_out
    def lerp(self, end: Any, weight: Any) -> Tensor:
        return torch.lerp(self.t, _raw(end), _like(weight, self.t))

    @_in_place
    def lerp_(self, end: Any, weight: Any) -> None:
        self.t.lerp_(_raw(end), _like(weight, self.t))

    @_out
    def neg(self) -> Tensor:
        return -self.t

    @_in_place
    def neg_(self) -> None:
        self.t.neg_()

    @_out
    def sqrt(self) -> Tensor:
        return self.t.sqrt()

    @_in_place
    def sqrt_(self) -> None:
        self.t.sqrt_()

    @_out
    def sign(self) -> Tensor:
        return self.t.sign()

    @_in_place
    def sign_(self) -> None:
        self.t.sign_()

    sgn = sign
    sgn_ = sign_

    @_out
    def abs(self) -> Tensor:
        return self.t.abs()

    @_in_place
    def zero_(self) -> None:
        self.t.zero_()

    @_out
    def clamp_min(self, other: Any) -> Tensor:
        return torch.clamp_min(self.t, _like(other, self.t))

    @_in_place
    def clamp_min_(self, other: Any) -> None:
        self.t.clamp_min_(_like(other, self.t))

    @_out
    def clamp_max(self, other: Any) -> Tensor:
        return torch.clamp_max(self.t, _like(other, self.t))

    @_in_place
    def clamp_max_(self, other: Any) -> None:
        self.t.clamp_max_(_like(other, self.t))

    @_in_place
    def clamp_(self, min: Any = None, max: Any = None) -> None:
        if min is not None:
            self.t.clamp_min_(_like(min, self.t))
        if max is not None:
            self.t.clamp_max_(_like(max, self.t))

    @_in_place
    def fill_(self, value: Any) -> None:
        self.t.fill_(_like(value, self.t))

    @_in_place
    def copy_(self, other: Any) -> None:
        self.t.copy_(_raw(other))

    @_out
    def clone(self) -> Tensor:
        return self.t.clone()

    @_out
    def reciprocal(self) -> Tensor:
        return self.t.reciprocal()

    @_in_place
    def reciprocal_(self) -> None:
        self.t.reciprocal_()

    @_out
    def maximum(self, other: Any) -> Tensor:
        return torch.maximum(self.t, _raw(other))

    @_out
    def gt(self, other: Any) -> Tensor:
        return self.t > _like(other, self.t)

    @_out
    def lt(self, other: Any) -> Tensor:
        return self.t < _like(other, self.t)

    @_out
    def eq(self, other: Any) -> Tensor:
        return self.t == _like(other, self.t)

    @_out
    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        return torch.where(_raw(mask), _like(value, self.t), self.t)

    @_in_place
    def masked_fill_(self, mask: Any, value: Any) -> None:
        self.t.copy_(torch.where(_raw(mask), _like(value, self.t), self.t))

    def __neg__(self) -> FusedTensor:
        return self.neg()


class FusedState:
    """``state`` inside the compiled step: the group's flat state buffers by key (read-only mapping)."""

    def __init__(self, buffers: dict[str, Tensor], layout: SegmentLayout | None = None) -> None:
        object.__setattr__(self, "_buffers", buffers)
        object.__setattr__(self, "_layout", layout)

    def __getattr__(self, key: str) -> FusedTensor | None:
        buffer = self._buffers.get(key)
        return None if buffer is None else FusedTensor(buffer, self._layout)

    def __setattr__(self, key: str, value: Any) -> None:
        raise RuntimeError(f"state.{key}: state cannot be created inside a fused step (the first step is eager)")

    def __contains__(self, key: str) -> bool:
        return key in self._buffers


def fused_update(
    update: Callable[..., None],
    optimizer: Any,
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    scalars: dict[str, Any],
    statics: dict[str, Any],
    flags: dict[str, bool],
    layout: SegmentLayout | None = None,
    average: Tensor | None = None,
    quantized: dict[str, tuple[Tensor, Tensor]] | None = None,
) -> None:
    """One step of ``update`` over a group's flat buffers; the function ``torch.compile`` compiles.

    ``statics["compute_dtype"]`` is the engine's one compute-dtype rule (:meth:`Optimizer.compute_dtype`), the
    same the eager paths use: e.g. bfloat16 parameters are updated in float32 and rounded once. ``average`` is a
    wrapper's flat buffer of weight averages (:mod:`ravine.engine.averaging`), moved towards the new parameters
    by ``scalars["average_weight"]`` in the same kernel, and written back into them with
    ``statics["average_write_back"]``.

    Compact state (:mod:`ravine.engine.compact`) is decoded here and stored back after the update:
    ``statics["state_storage"]`` names a narrow float the ``state`` buffers hold (rounded with
    ``scalars["state_seed"]``), and ``quantized`` maps other keys to their 8-bit codes and block maxima (one
    tensor per call, since blocks belong to a tensor). ``statics["state_aligned"]``: the call's elements fill
    their blocks exactly, so the codes are read and written as ``(blocks, BLOCK)`` rows without padding (the
    engine gives a tensor's partial last block a call of its own). Nothing here is materialised: inductor keeps
    the decoded and updated state in registers or one temporary, which measured fastest on CPU.
    """
    compute_dtype = getattr(torch, statics.pop("compute_dtype"))
    weight = scalars.pop("average_weight", None)
    write_back = statics.pop("average_write_back", False)
    storage = statics.pop("state_storage", None)
    nonnegative = statics.pop("nonnegative_state", ())
    seed = scalars.pop("state_seed", None)
    state = dict(state)
    comp = state.pop("kahan_comp", None)  # kahan_sum: the parameter's value is param + comp
    stored = dict(state)
    if storage is not None and storage != "int8":
        state = {key: buffer.to(compute_dtype) for key, buffer in stored.items()}
    aligned = statics.pop("state_aligned", False)
    for key, (codes, absmax) in (quantized or {}).items():
        state[key] = compact.dequantize(codes, absmax, param.shape, aligned)
    work = param if param.dtype == compute_dtype else param.to(compute_dtype)
    if comp is not None and work is not param:
        work = work + comp.to(compute_dtype)
    # GradScaler's unscale (a float32 multiply, as its own pass would do), then ±1 for maximize: one graph.
    g = grad.to(compute_dtype) * scalars.pop("inv_scale").to(grad.dtype).to(compute_dtype)
    g = g * scalars.pop("grad_sign").to(compute_dtype)
    update(optimizer, FusedTensor(work, layout), FusedTensor(g, layout), FusedState(state, layout),
           FusedHyper(scalars, statics, flags))
    if work is not param and comp is not None:
        # the rounded parameter made opaque: inductor would otherwise keep it in float32 and find no error
        rounded = materialize(work.to(param.dtype))
        param.copy_(rounded)
        comp.copy_(work - rounded.to(compute_dtype))
    elif work is not param:
        param.copy_(work)
    if storage is not None and storage != "int8":
        step_seed = seed.to(torch.int64) * 65536
        for key, buffer in stored.items():
            buffer.copy_(compact.round_to(state[key], buffer.dtype, step_seed + compact.key_seed(key)))
    for key, (codes, absmax) in (quantized or {}).items():
        new_codes, new_absmax = compact.quantize(state[key], nonnegative=key in nonnegative, blocks=codes.shape[0],
                                                 aligned=aligned)
        codes.copy_(new_codes)
        absmax.copy_(new_absmax)
    if average is not None:  # as lerp_averages does it: from the rounded parameter, in the average's dtype
        average.lerp_(param.to(average.dtype), weight.to(average.dtype))
        if write_back:
            param.copy_(average)


def fused_update_with_reductions(*args: Any) -> None:
    """:func:`fused_update` for algorithms with whole-tensor reductions: a code object of its own, compiled with
    :data:`RECOMPUTE`."""
    fused_update(*args)


# Inductor stores a value that kernels on both sides of a reduction read (an update, and the count of its
# coordinates that agree with the gradient) once it reads more than a few buffers, then reads it back: a buffer
# the size of the parameters allocated, written and read at every step. Recomputing it from the state is
# cheaper; benchmarks/cautious_fused.py measures the two-pass step against the bare one (benchmarks/RESULTS.md).
RECOMPUTE = {"realize_reads_threshold": 100, "realize_opcount_threshold": 1000, "realize_acc_reads_threshold": 100}


@functools.cache
def compiled_update(reductions: bool = False) -> Callable[..., None]:
    """The compiled :func:`fused_update`, built on first use (one code object; graphs cached by torch);
    ``reductions``: :func:`fused_update_with_reductions`, which recomputes rather than stores.

    Compiled with dynamic shapes, so one graph serves every buffer length. On the CPU, inductor decides from
    the length it first sees whether a loop is worth running in parallel, and writes the decision (and the
    thread count) into the kernel — which its on-disk cache then serves for every length, in every later
    process: a first fused step over a few small tensors (a test, a small param group, a process under
    torchrun's ``OMP_NUM_THREADS=1``) left every later step on one core. ``cpp.dynamic_threads`` makes every
    loop a parallel region whose thread count the OpenMP runtime decides when it runs.
    """
    options: dict[str, Any] = {"cpp.dynamic_threads": True, **(RECOMPUTE if reductions else {})}
    function = fused_update_with_reductions if reductions else fused_update
    return torch.compile(function, fullgraph=True, dynamic=True, options=options)

"""Flat buffers: the parameters, gradients and state of a fused batch, each in one contiguous buffer.

Parameters are re-pointed to views of the parameter buffer (``p.data``), gradients are views of the gradient
buffer that autograd accumulates into in place, and ``optimizer.state[p][key]`` are views of the state
buffers, so ``state_dict`` keeps torch's per-parameter format. Only state shaped like its parameter is
flattened; per-parameter scalars (0-d state such as NAdam's ``mu_product``) stay where they are.

Gradients keep torch's meaning: ``zero_grad()`` sets them to None, and a parameter that backward does not
reach keeps None and is not stepped. A tensor hook on each parameter runs just before autograd accumulates a
gradient into a parameter whose ``.grad`` is None and hands it its zeroed view of the gradient buffer, so the
gradient still lands in the flat buffer with no copy.
"""

from __future__ import annotations

import itertools
import operator
import weakref
from typing import Any, NamedTuple

import torch
from torch import Tensor

BLOCK = 256  # elements per row of a fused segment reduction


class SegmentLayout(NamedTuple):
    """Where each tensor (segment) of a flat buffer lies, for whole-tensor reductions inside a fused step.

    A buffer laid out for reductions starts every tensor on a multiple of :data:`BLOCK` (the gaps are padding),
    so it is a ``(rows, BLOCK)`` matrix each of whose rows belongs to one tensor. A reduction then runs over rows,
    masked to each row's own elements (one vectorised pass that inductor fuses with the arithmetic producing its
    input), and ``segment_reduce`` combines each tensor's rows; a per-tensor result reaches the elements as one
    value per row, which the vector loop over a row reads once. Nothing is summed across tensors and subtracted.

    ``rows`` is None for a buffer that is one tensor, unpadded (the one-tensor-at-a-time step): its reductions
    are plain whole-buffer ones.
    """

    rows: Tensor | None  # (rows,) the tensor each row belongs to
    row_valid: Tensor | None  # (rows, 1) how many of a row's elements are its tensor's (the rest: padding)
    row_counts: Tensor | None  # (tensors,) rows per tensor (int64, for segment_reduce)
    counts: Tensor  # (tensors,) each tensor's element count (float64)


def padded_numels(numels: list[int]) -> list[int]:
    """Each tensor's length in a buffer laid out for reductions: its element count rounded up to whole rows."""
    return [-(-n // BLOCK) * BLOCK for n in numels]


def segment_layout(numels: list[int], device: torch.device) -> SegmentLayout:
    """The :class:`SegmentLayout` of tensors of ``numels`` elements, each starting on a row of a buffer laid
    out by :func:`padded_numels`."""
    sizes = torch.tensor(numels, dtype=torch.int64)
    row_counts = torch.tensor(padded_numels(numels), dtype=torch.int64) // BLOCK
    rows = torch.repeat_interleave(torch.arange(len(numels), dtype=torch.int32), row_counts)
    first_row = torch.cumsum(row_counts, 0) - row_counts
    within = torch.arange(rows.numel(), dtype=torch.int64) - first_row.repeat_interleave(row_counts)
    row_valid = (sizes.repeat_interleave(row_counts) - within * BLOCK).clamp_max(BLOCK).to(torch.int32)
    return SegmentLayout(rows.to(device), row_valid[:, None].to(device), row_counts.to(device),
                         sizes.to(torch.float64).to(device))


def whole_layout(numel: int, device: torch.device) -> SegmentLayout:
    """The :class:`SegmentLayout` of a buffer that is one tensor of ``numel`` elements, unpadded."""
    return SegmentLayout(None, None, None, torch.tensor([float(numel)], dtype=torch.float64, device=device))


GRAD_OF = operator.attrgetter("grad")  # a parameter's .grad, for loops over parameters kept in C


def offsets_of(numels: list[int]) -> list[int]:
    """Where each of tensors of ``numels`` elements starts in a buffer holding them end to end, and the total."""
    return [0, *itertools.accumulate(numels)]


def states_intact(params: list[Tensor], states: list[dict[str, Any]], views: dict[str, list[Tensor]],
                  all_states: dict[Tensor, Any]) -> bool:
    """Is each parameter's state still ``states`` (no reload), holding every one of a batch's ``views`` (no state
    tensor replaced)? Comparisons only: it runs before every fused step."""
    # map and operator.is_ keep these loops in C: a fused step of many small tensors would feel them otherwise
    if not all(map(operator.is_, map(all_states.get, params), states)):
        return False
    return all(all(map(operator.is_, map(dict.get, states, itertools.repeat(key)), batch_views))
               for key, batch_views in views.items())


def stack_steps(states: list[dict[str, Any]], views: dict[str, list[Tensor]]) -> Tensor | None:
    """The engine's step counters of a batch (0-d tensors, torch's format) made the elements of one buffer, so
    counting a step is one kernel, not one per parameter; ``views["step"]`` records them. The batch steps
    together: their values are equal. A "step" the algorithm keeps itself (a scalar_state) is left alone."""
    if not torch.is_tensor(states[0].get("step")):
        return None
    steps = torch.stack([s["step"] for s in states])
    views["step"] = list(steps.unbind())
    for s, view in zip(states, views["step"], strict=True):
        s["step"] = view
    return steps


class FlatGroup:
    """Parameters, gradients and state of one (device, dtype) batch, each in one contiguous buffer."""

    def __init__(self, params: list[Tensor], states: list[dict[str, Any]],
                 scalar_keys: tuple[str, ...] = (), count_steps: bool = False, aligned: bool = False) -> None:
        self.params = params
        self.numels = [p.numel() for p in params]
        # aligned: laid out for whole-tensor reductions (each tensor from a row boundary, see SegmentLayout)
        self.aligned = aligned
        self.offsets = offsets_of(padded_numels(self.numels) if aligned else self.numels)
        # Each tensor is moved into its buffer and its old storage released before the next one, so building
        # the buffers never holds two copies of a whole batch (the buffers' pages are touched as they fill).
        self.param_buffer = self._empty(params[0].dtype)
        for p, view in zip(params, self._views(self.param_buffer), strict=True):
            view.copy_(p.detach())
            p.data = view
        self.grad_buffer = self._empty(params[0].dtype)
        self.grad_views = self._views(self.grad_buffer)
        for p, view in zip(params, self.grad_views, strict=True):
            if p.grad is not None:
                view.copy_(p.grad)
            else:
                view.zero_()
            p.grad = view
        me = weakref.ref(self)
        self.hooks = [p.register_hook(_GradientRoute(p, me, i)) for i, p in enumerate(params) if p.requires_grad]
        weakref.finalize(self, _remove_hooks, self.hooks)  # dropped with its optimizer: the routes go too
        keys = [k for k, v in states[0].items() if k != "step" and k not in scalar_keys and torch.is_tensor(v)]
        self.state_buffers: dict[str, Tensor] = {}
        self.state_views: dict[str, list[Tensor]] = {}
        for key in keys:
            buffer = self._empty(states[0][key].dtype)
            self.state_buffers[key] = buffer
            self.state_views[key] = self._views(buffer)
            for s, view in zip(states, self.state_views[key], strict=True):
                view.copy_(s[key])
                s[key] = view
        self.steps = stack_steps(states, self.state_views) if count_steps else None
        self.states = states
        self.param_ptrs = [p.data_ptr() for p in params]
        self.average_buffer: Tensor | None = None  # see attach_average
        self.average_views: list[Tensor] | None = None
        self._layout: SegmentLayout | None = None  # built by layout() for algorithms with reductions

    def _empty(self, dtype: torch.dtype) -> Tensor:
        """A buffer for the group; an aligned one's padding is zero (an update of zeros, never read)."""
        make = torch.zeros if self.aligned else torch.empty
        return make(self.offsets[-1], dtype=dtype, device=self.params[0].device)

    def _gather(self, tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
        buffer = self._empty(dtype)
        for t, view in zip(tensors, self._views(buffer), strict=True):
            view.copy_(t)
        return buffer

    def _views(self, buffer: Tensor) -> list[Tensor]:
        starts = self.offsets[:-1]
        return [buffer[at:at + p.numel()].view(p.shape) for p, at in zip(self.params, starts, strict=True)]

    def attach_average(self, averages: dict[Tensor, Tensor]) -> Tensor:
        """One flat buffer holding ``averages[p]`` for the parameters of this group (a wrapper's averages of the
        weights), laid out as the parameter buffer; ``averages`` is re-pointed to views of it. Kept while the
        wrapper keeps those views."""
        views = self.average_views
        if views is not None and all(averages[p] is v for p, v in zip(self.params, views, strict=True)):
            return self.average_buffer
        first = averages[self.params[0]]
        self.average_buffer = self._gather([averages[p] for p in self.params], first.dtype)
        self.average_views = self._views(self.average_buffer)
        for p, view in zip(self.params, self.average_views, strict=True):
            averages[p] = view
        return self.average_buffer

    def layout(self) -> SegmentLayout:
        """Where each tensor lies in the buffers of an aligned group (see :class:`SegmentLayout`), built on first
        use."""
        if not self.aligned:
            raise RuntimeError("a flat group laid out without padding has no segment layout (build it aligned)")
        if self._layout is None:
            self._layout = segment_layout(self.numels, self.param_buffer.device)
        return self._layout

    def intact(self, all_states: dict[Tensor, Any]) -> bool:
        """Do the parameters and state still live in this group's buffers (no ``.to()``, no reload, no state
        tensor replaced)? Checked before every fused step: comparisons only, no per-tensor arithmetic."""
        if list(map(Tensor.data_ptr, self.params)) != self.param_ptrs:
            return False
        return states_intact(self.params, self.states, self.state_views, all_states)

    def grads_in_place(self) -> bool:
        """Is every parameter's gradient the view of the gradient buffer autograd accumulates into?"""
        return all(map(operator.is_, map(GRAD_OF, self.params), self.grad_views))

    def collect_grads(self) -> None:
        """Make every ``p.grad`` the view autograd accumulates into (copying a gradient made elsewhere, e.g. one
        the user assigned). Every parameter of the batch has a gradient: the engine steps no other."""
        if self.grads_in_place():
            return
        for p, view in zip(self.params, self.grad_views, strict=True):
            grad = p.grad
            if grad is not view:
                if grad.data_ptr() != view.data_ptr():
                    view.copy_(grad)
                p.grad = view

    def release(self, keep: set[int]) -> None:
        """This group's buffers are being dropped: parameters not in ``keep`` (and their state and gradient)
        get storage of their own, so the old buffers do not stay alive through their views."""
        for handle in self.hooks:
            handle.remove()
        for p, state in zip(self.params, self.states, strict=True):
            if id(p) in keep:
                continue
            p.data = p.detach().clone()
            for key in self.state_views:
                if key in state:
                    state[key] = state[key].clone()
            if p.grad is not None and self.owns_grad(p):
                p.grad = p.grad.clone()

    def owns_grad(self, p: Tensor) -> bool:
        grad = p.grad
        if grad is None:
            return False
        start = self.grad_buffer.data_ptr()
        end = start + self.grad_buffer.numel() * self.grad_buffer.element_size()
        return start <= grad.data_ptr() < end


class _GradientRoute:
    """Tensor hook: before autograd accumulates into a parameter whose ``.grad`` is None, give it its zeroed
    view of the flat gradient buffer, so autograd accumulates there in place.

    It holds its flat group weakly: a parameter outlives its optimizer (a notebook builds a new one for the same
    model), and a strong reference would keep the old gradient buffer allocated and go on routing gradients
    into it, which the new optimizer would then copy at every step."""

    __slots__ = ("group", "index", "param")

    def __init__(self, param: Tensor, group: weakref.ref[FlatGroup], index: int) -> None:
        self.param, self.group, self.index = param, group, index

    def __call__(self, grad: Tensor) -> None:
        group = self.group()
        if group is not None and self.param.grad is None:
            self.param.grad = group.grad_views[self.index].zero_()


def _remove_hooks(handles: list[Any]) -> None:
    for handle in handles:
        handle.remove()

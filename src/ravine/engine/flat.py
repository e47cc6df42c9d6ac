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

from typing import Any

import torch
from torch import Tensor


class FlatGroup:
    """Parameters, gradients and state of one (device, dtype) batch, each in one contiguous buffer."""

    def __init__(self, params: list[Tensor], states: list[dict[str, Any]],
                 scalar_keys: tuple[str, ...] = ()) -> None:
        self.params = params
        self.numels = [p.numel() for p in params]
        offsets = [0]
        for n in self.numels:
            offsets.append(offsets[-1] + n)
        self.offsets = offsets
        self.param_buffer = self._gather([p.detach() for p in params], params[0].dtype)
        for p, view in zip(params, self._views(self.param_buffer), strict=True):
            p.data = view
        self.grad_buffer = torch.zeros_like(self.param_buffer)
        self.grad_views = self._views(self.grad_buffer)
        for p, view in zip(params, self.grad_views, strict=True):
            if p.grad is not None:
                view.copy_(p.grad)
            p.grad = view
        self.hooks = [p.register_hook(_GradientRoute(p, view))
                      for p, view in zip(params, self.grad_views, strict=True) if p.requires_grad]
        keys = [k for k, v in states[0].items() if k != "step" and k not in scalar_keys and torch.is_tensor(v)]
        self.state_buffers: dict[str, Tensor] = {}
        for key in keys:
            buffer = self._gather([s[key] for s in states], states[0][key].dtype)
            self.state_buffers[key] = buffer
            for s, view in zip(states, self._views(buffer), strict=True):
                s[key] = view
        self.states = states
        self._layout: tuple[Tensor, Tensor] | None = None  # built by layout() for algorithms with reductions

    def _gather(self, tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
        buffer = torch.empty(self.offsets[-1], dtype=dtype, device=self.params[0].device)
        for t, view in zip(tensors, self._views(buffer), strict=True):
            view.copy_(t)
        return buffer

    def _views(self, buffer: Tensor) -> list[Tensor]:
        return [
            buffer[start:end].view(p.shape)
            for p, start, end in zip(self.params, self.offsets, self.offsets[1:], strict=False)
        ]

    def layout(self) -> tuple[Tensor, Tensor]:
        """(segment id of every element, element count of every tensor), built on first use."""
        if self._layout is None:
            device = self.param_buffer.device
            numels = torch.tensor(self.numels, device=device)
            dtype = torch.int32 if self.offsets[-1] < 2**31 else torch.int64
            ids = torch.repeat_interleave(torch.arange(len(self.numels), device=device, dtype=dtype), numels)
            self._layout = (ids, numels.to(torch.float64))
        return self._layout

    def intact(self, states: list[dict[str, Any]]) -> bool:
        """Do the parameters and state still live in this group's buffers (no ``.to()``, no reload)?"""
        base = self.param_buffer.data_ptr()
        element = self.param_buffer.element_size()
        for p, start in zip(self.params, self.offsets, strict=False):
            if p.data_ptr() != base + start * element:
                return False
        for mine, theirs in zip(self.states, states, strict=True):
            if mine is not theirs:
                return False
        for key, buffer in self.state_buffers.items():
            base, element = buffer.data_ptr(), buffer.element_size()
            for state, start in zip(states, self.offsets, strict=False):
                value = state.get(key)
                if value is None or value.data_ptr() != base + start * element:
                    return False
        return True

    def collect_grads(self) -> None:
        """Make every ``p.grad`` the view autograd accumulates into (copying a gradient made elsewhere, e.g. one
        the user assigned). Every parameter of the batch has a gradient: the engine steps no other."""
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
            for key in self.state_buffers:
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
    view of the flat gradient buffer, so autograd accumulates there in place."""

    __slots__ = ("param", "view")

    def __init__(self, param: Tensor, view: Tensor) -> None:
        self.param, self.view = param, view

    def __call__(self, grad: Tensor) -> None:
        if self.param.grad is None:
            self.param.grad = self.view.zero_()

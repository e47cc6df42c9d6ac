"""The eager runner: an algorithm's ``update`` run per tensor, or over batches of tensors.

* Per tensor: ``update`` receives one parameter, its gradient and its state as plain tensors. Every kind of
  math runs here, and with torch's order of operations it is bit-identical to torch's ``foreach=False``.
* Multi-tensor, elementwise math: ``update`` receives :class:`~ravine.engine.tensorlist.TensorList` batches
  (same device, dtype, step and state keys) and its methods become ``torch._foreach_*`` kernels.
* Multi-tensor, tensorwise math: same-shape parameters are stacked along a new leading dimension, so one
  ``update`` call (one batched matrix product, one batched reduction) serves them all, when the algorithm
  says its math treats leading dimensions as a batch (``batched_update``); otherwise it runs per tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ravine.engine.differentiable import DiffState, DiffTensor
from ravine.engine.tensorlist import TensorList
from ravine.engine.views import Hyper, StateView, real_view

if TYPE_CHECKING:
    from ravine.engine.optimizer import Optimizer


def foreach_devices() -> list[str]:
    try:
        from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

        return list(_get_foreach_kernels_supported_devices())
    except ImportError:  # pragma: no cover - older or trimmed torch builds
        return ["cuda", "xpu"]


def default_to_foreach(params: list[Tensor]) -> bool:
    """torch's default: multi-tensor when every parameter is a plain (or DTensor) tensor on an accelerator."""
    from torch.optim import optimizer as torch_optimizer

    supported_types = tuple(torch_optimizer._foreach_supported_types)  # DTensor joins this list on import
    devices = foreach_devices()
    return all(type(p) in supported_types and p.device.type in devices for p in params)


def unscale(params: list[Tensor], inv_scale: Tensor | None) -> None:
    """Divide gradients by GradScaler's scale in place, as ``GradScaler.unscale_`` would."""
    if inv_scale is None:
        return
    by_device: dict[torch.device, list[Tensor]] = {}
    for p in params:
        by_device.setdefault(p.grad.device, []).append(p.grad)
    for device, grads in by_device.items():
        torch._foreach_mul_(grads, inv_scale.to(device))


def batches(optimizer: Optimizer, params: list[Tensor], *, chunked: bool = False,
            by_shape: bool = False) -> list[list[Tensor]]:
    """Parameters that can share kernels and scalars: same device, dtype, step, scalar state and state keys.

    With ``by_shape`` (tensorwise math) batches also share a shape. With ``chunked`` each batch is split into
    runs of at most the largest parameter's size, so the temporaries a multi-tensor update makes
    (``denom``, ...) never exceed that size in total — the peak memory of a foreach step over a whole model is
    a known complaint about torch's foreach path.
    """
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    for p in params:
        state = optimizer.state.get(p, {})
        step = state["step"].item() if torch.is_tensor(state.get("step")) else state.get("step")
        scalars = tuple(float(state[k]) for k in optimizer.scalar_state if k in state)
        # DTensors batch only with the same mesh and placements (one foreach call must not mix them).
        layout = (getattr(p, "device_mesh", None), tuple(getattr(p, "placements", ())))
        shape = tuple(p.shape) if by_shape else None
        key = (p.device, p.dtype, p.grad.dtype, type(p), layout, step, scalars, tuple(sorted(state)), shape)
        groups.setdefault(key, []).append(p)
    if not chunked:
        return list(groups.values())
    limit = max(p.numel() for p in params)
    chunks: list[list[Tensor]] = []
    for batch in groups.values():
        chunk: list[Tensor] = []
        size = 0
        for p in batch:
            if chunk and size + p.numel() > limit:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(p)
            size += p.numel()
        chunks.append(chunk)
    return chunks


def states_of(optimizer: Optimizer, params: list[Tensor]) -> list[dict[str, Any]]:
    """Each parameter's state dict; a new, not yet stored one where it has none (see keep_created_state)."""
    return [optimizer.state[p] if optimizer.state.get(p) else {} for p in params]


def keep_created_state(optimizer: Optimizer, params: list[Tensor], states: list[dict[str, Any]]) -> None:
    """Store state the update created lazily (SGD's momentum buffer), so a stateless step stores none."""
    for p, state in zip(params, states, strict=True):
        if state and not optimizer.state.get(p):
            optimizer.state[p] = state


def advance(optimizer: Optimizer, states: list[dict[str, Any]], hp: Hyper, *, batched: bool,
             is_complex: bool) -> StateView:
    """Count the step, run the eager per-step hook, and give the update its state view."""
    if optimizer.step_counter:
        steps = [s["step"] for s in states]
        if batched:
            torch._foreach_add_(steps, 1)
        else:
            steps[0] += 1
        hp.step = steps[0].item()
    views = StateView(states, is_complex=is_complex, batched=batched)
    for key, value in optimizer.step_scalars(views, hp).items():
        setattr(hp, key, value)
    return views


def run(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper, *, batched: bool) -> None:
    """One step of ``update`` for one parameter, or for a TensorList batch (elementwise math)."""
    states = states_of(optimizer, params)
    grads = [p.grad for p in params]
    if group["maximize"]:
        grads = torch._foreach_neg(grads) if batched else [-grads[0]]
    views = advance(optimizer, states, hp, batched=batched, is_complex=params[0].is_complex())
    dtype = optimizer.compute_dtype(params[0], group)
    if dtype == params[0].dtype:
        work, g_work = [real_view(p) for p in params], [real_view(g) for g in grads]
    else:  # e.g. bfloat16 parameters with float32 state: compute in float32, round once at the end
        work, g_work = [p.to(dtype) for p in params], [g.to(dtype) for g in grads]
    if batched:
        optimizer.update(TensorList(work), TensorList(g_work), views, hp)
    else:
        optimizer.update(work[0], g_work[0], views, hp)
    if dtype != params[0].dtype:
        torch._foreach_copy_(params, work)
    keep_created_state(optimizer, params, states)


def run_stacked(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """One ``update`` call for same-shape parameters stacked along a new leading dimension (tensorwise math).

    Parameters, gradients and state shaped like their parameter are stacked; per-parameter scalars (0-d state
    of a non-0-d parameter) are shared by the batch. Results are written back to each tensor.
    """
    states = states_of(optimizer, params)
    grads = [p.grad for p in params]
    dtype = optimizer.compute_dtype(params[0], group)
    g = torch.stack(grads).to(dtype)
    if group["maximize"]:
        g = g.neg_()
    advance(optimizer, states, hp, batched=True, is_complex=False)
    stacked_keys = [k for k, v in states[0].items() if torch.is_tensor(v) and k != "step"
                    and k not in optimizer.scalar_state]
    stacked = {k: torch.stack([s[k] for s in states]) for k in stacked_keys}
    work = torch.stack([p.detach() for p in params]).to(dtype)
    view = StateView([stacked], is_complex=False, batched=False)
    hp.batch_dims = 1
    try:
        optimizer.update(work, g, view, hp)
    finally:
        hp.batch_dims = 0
    for i, (p, state) in enumerate(zip(params, states, strict=True)):
        p.copy_(work[i])
        for key, value in stacked.items():
            if key in state:
                state[key].copy_(value[i])
            else:  # created by the update on this step
                state[key] = value[i].clone()
    keep_created_state(optimizer, params, states)


def run_differentiable(optimizer: Optimizer, p: Tensor, group: dict[str, Any], hp: Hyper) -> None:
    """One step of ``update`` for one parameter, under autograd (``differentiable=True``)."""
    (state,) = states_of(optimizer, [p])
    grad = -p.grad if group["maximize"] else p.grad
    advance(optimizer, [state], hp, batched=False, is_complex=False)
    dtype = optimizer.compute_dtype(p, group)
    # copies: the values the graph reads must not be the tensors written back into below
    work, g = DiffTensor(real_view(p).to(dtype, copy=True)), DiffTensor(real_view(grad).to(dtype))
    view = DiffState(state, optimizer.scalar_state, is_complex=p.is_complex())
    optimizer.update(work, g, view, hp)
    real_view(p).copy_(work.t)  # in place, as torch's differentiable step updates the parameter
    view.write_back()
    keep_created_state(optimizer, [p], [state])

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

from ravine.engine import compact
from ravine.engine.differentiable import DiffState, DiffTensor
from ravine.engine.tensorlist import TensorList
from ravine.engine.views import Hyper, StateView, TensorState, real_view

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


def batches(optimizer: Optimizer, params: list[Tensor], *, chunked: bool = False, by_shape: bool = False,
            limit: int | None = None) -> list[list[Tensor]]:
    """Parameters that can share kernels and scalars: same device, dtype, step, scalar state and state keys.

    With ``by_shape`` (tensorwise math) batches also share a shape. With ``chunked`` each batch is split into
    runs of at most ``limit`` elements (default: the largest parameter's size), so the temporaries a
    multi-tensor update makes (``denom``, ...) never exceed that size in total — the peak memory of a foreach
    step over a whole model is a known complaint about torch's foreach path.
    """
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    all_states, scalar_keys = optimizer.state, optimizer.scalar_state
    plain = (Tensor, torch.nn.Parameter)
    for p in params:
        state = all_states.get(p, {})
        step = state.get("step")
        if step is not None and torch.is_tensor(step):
            step = step.item()
        scalars = tuple(float(state[k]) for k in scalar_keys if k in state) if scalar_keys else ()
        # DTensors batch only with the same mesh and placements (one foreach call must not mix them).
        kind = type(p)
        layout = None if kind in plain else (getattr(p, "device_mesh", None), tuple(getattr(p, "placements", ())))
        shape = tuple(p.shape) if by_shape else None
        key = (p.device, p.dtype, p.grad.dtype, kind, layout, step, scalars, tuple(state), shape)
        groups.setdefault(key, []).append(p)
    if not chunked:
        return list(groups.values())
    if limit is None:
        limit = max(p.numel() for p in params)
    chunks: list[list[Tensor]] = []
    for batch in groups.values():
        chunk: list[Tensor] = []
        size = 0
        for p in batch:
            n = p.numel()
            if chunk and size + n > limit:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(p)
            size += n
        chunks.append(chunk)
    return chunks


# Where multi-tensor kernels are loops over the per-tensor kernels (CPU), both paths give the same bits, and
# a tensor below SMALL elements costs less in its kernels than in the Python around them: the default path
# batches such tensors, in runs of at most SMALL_RUN elements (their temporaries stay in cache), and steps
# larger ones one at a time (a batch of large tensors would stream each temporary through memory op by op).
SMALL, SMALL_RUN = 1 << 16, 1 << 18


def run_default(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """The default path of elementwise math where torch's default is its for-loop (CPU): small tensors in
    multi-tensor runs, the others per tensor — bit for bit the per-tensor path, with less overhead."""
    small, large = [], []
    for p in params:
        (small if p.numel() < SMALL else large).append(p)
    if len(small) < 2:
        run_each(optimizer, params, group, hp)
        return
    if large:
        run_each(optimizer, large, group, hp)
    for batch in batches(optimizer, small, chunked=True, limit=SMALL_RUN):
        if len(batch) == 1:
            run_each(optimizer, batch, group, hp)
        else:
            run(optimizer, batch, group, hp)


def states_of(optimizer: Optimizer, params: list[Tensor]) -> list[dict[str, Any]]:
    """Each parameter's state dict; a new, not yet stored one where it has none (see keep_created_state)."""
    return [state if state else {} for state in map(optimizer.state.get, params)]


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


COMPENSATION = "kahan_comp"  # kahan_sum: each low-precision parameter's rounding error, in its own dtype


def compensations(states: list[dict[str, Any]]) -> list[Tensor] | None:
    """The parameters' Kahan compensations (``kahan_sum=True``), or None where they keep none."""
    if COMPENSATION not in states[0]:
        return None
    return [state[COMPENSATION] for state in states]


def working_copy(p: Tensor, dtype: torch.dtype, comp: Tensor | None) -> Tensor:
    """``p`` in the compute ``dtype`` for its update, plus its rounding error under ``kahan_sum``."""
    work = p.to(dtype)
    return work if comp is None else work.add_(comp)


def write_back(p: Tensor, work: Tensor, comp: Tensor | None) -> None:
    """Round the updated ``work`` into ``p``; under ``kahan_sum`` keep what the rounding lost in ``comp``."""
    p.copy_(work)
    if comp is not None:
        comp.copy_(work.sub(p))


def decoded(optimizer: Optimizer, params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any]
            ) -> list[dict[str, Any]] | None:
    """The states as the update sees them when they are stored compactly (:mod:`ravine.engine.compact`), else
    None. :func:`encoded` stores them back after the update."""
    storage = optimizer.state_storage(params[0], group)
    if storage is None:
        return None
    dtype = optimizer.compute_dtype(params[0], group)
    skip = optimizer.unencoded_state
    return [compact.decode(s, p.shape, dtype, skip) for p, s in zip(params, states, strict=True)]


def encoded(optimizer: Optimizer, params: list[Tensor], works: list[dict[str, Any]], states: list[dict[str, Any]],
            group: dict[str, Any], hp: Hyper) -> None:
    storage = optimizer.state_storage(params[0], group)
    for p, work, state in zip(params, works, states, strict=True):
        compact.encode(work, state, storage, p.shape, optimizer.nonnegative_state, optimizer.unencoded_state,
                       hp.state_seed)


def run(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """One step of ``update`` for a TensorList batch (elementwise math): every ``update`` call covers the batch."""
    stored = states_of(optimizer, params)
    works = decoded(optimizer, params, stored, group)
    states = stored if works is None else works
    fresh = [i for i, state in enumerate(states) if not state]  # state the update may create (SGD's buffer)
    grads = [p.grad for p in params]
    if group["maximize"]:
        grads = torch._foreach_neg(grads)
    first = params[0]
    is_complex = first.is_complex()
    views = advance(optimizer, states, hp, batched=True, is_complex=is_complex)
    dtype = optimizer.compute_dtype(first, group)
    comps = None
    if dtype != first.dtype:  # e.g. bfloat16 parameters with float32 state: compute in float32, round once
        comps = compensations(states)
        work = [working_copy(p, dtype, None if comps is None else comps[i]) for i, p in enumerate(params)]
        g_work = [g.to(dtype) for g in grads]
    elif is_complex:
        work, g_work = [real_view(p) for p in params], [real_view(g) for g in grads]
    else:
        work, g_work = params, grads
    optimizer.update(TensorList(work), TensorList(g_work), views, hp)
    if comps is not None:
        for p, w, c in zip(params, work, comps, strict=True):
            write_back(p, w, c)
    elif dtype != first.dtype:
        torch._foreach_copy_(params, work)
    if works is not None:
        encoded(optimizer, params, works, stored, group, hp)
    if fresh:
        keep_created_state(optimizer, [params[i] for i in fresh], [stored[i] for i in fresh])


def run_each(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """One ``update`` call per parameter, with plain tensors (every kind of math runs here).

    Models of many small tensors spend more time here between kernels than in them, so the loop does per
    parameter only what differs per parameter: what the whole group shares (``maximize``, the compute dtype
    of each parameter dtype, bound methods) is looked up once.
    """
    all_states = optimizer.state
    maximize = group["maximize"]
    counter = optimizer.step_counter
    update = optimizer.update
    step_scalars = optimizer.step_scalars if "step_scalars" in optimizer.overrides else None
    # parameter dtype -> (compute dtype, complex?, compact storage)
    plans: dict[torch.dtype, tuple[torch.dtype, bool, str | None]] = {}
    for p in params:
        stored = all_states.get(p)
        state = {} if stored is None else stored
        own = p.dtype
        plan = plans.get(own)
        if plan is None:
            plan = plans[own] = (optimizer.compute_dtype(p, group), own.is_complex,
                                 optimizer.state_storage(p, group))
        dtype, is_complex, storage = plan
        if storage is not None:
            stored = state
            state = compact.decode(stored, p.shape, dtype, optimizer.unencoded_state)
        grad = p.grad
        if maximize:
            grad = -grad
        if counter:
            step = state["step"]
            step += 1
            hp.step = step.item()
        view = StateView([state], is_complex=True, batched=False) if is_complex else TensorState(state)
        if step_scalars is not None:
            for key, value in step_scalars(view, hp).items():
                setattr(hp, key, value)
        if dtype is not own:  # e.g. bfloat16 parameters with float32 state: compute in float32, round once
            comp = state.get(COMPENSATION)  # kahan_sum: the parameter's value is p + its rounding error
            work = working_copy(p, dtype, comp)
            update(work, grad.to(dtype), view, hp)
            write_back(p, work, comp)
        elif is_complex:
            update(real_view(p), real_view(grad), view, hp)
        else:
            update(p, grad, view, hp)
        if storage is not None:
            compact.encode(state, stored, storage, p.shape, optimizer.nonnegative_state,
                           optimizer.unencoded_state, hp.state_seed)
            if stored and all_states.get(p) is not stored:
                all_states[p] = stored
        elif stored is None and state:  # created by the update (SGD's momentum buffer)
            all_states[p] = state


def run_stacked(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """One ``update`` call for same-shape parameters stacked along a new leading dimension (tensorwise math).

    Parameters, gradients and state shaped like their parameter are stacked; per-parameter scalars (0-d state
    of a non-0-d parameter) are shared by the batch. Results are written back to each tensor.
    """
    stored = states_of(optimizer, params)
    works = decoded(optimizer, params, stored, group)
    states = stored if works is None else works
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
    comps = compensations(states)
    if comps is not None:
        work.add_(torch.stack(comps))
    view = StateView([stacked], is_complex=False, batched=False)
    hp.batch_dims = 1
    try:
        optimizer.update(work, g, view, hp)
    finally:
        hp.batch_dims = 0
    for i, (p, state) in enumerate(zip(params, states, strict=True)):
        write_back(p, work[i], None if comps is None else comps[i])
        for key, value in stacked.items():
            if key == COMPENSATION:
                continue
            if key in state:
                state[key].copy_(value[i])
            else:  # created by the update on this step
                state[key] = value[i].clone()
    if works is not None:
        encoded(optimizer, params, works, stored, group, hp)
    keep_created_state(optimizer, params, stored)


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

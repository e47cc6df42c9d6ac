"""The fused step on DTensor parameters (FSDP2 shards): the compiled kernel over each rank's local shards.

Elementwise math on a sharded (or replicated) tensor is the same math on each rank's local piece, so the fused
path runs its compiled step on the local tensors directly, never through DTensor's per-operator dispatch.

Parameters and gradients stay where FSDP2 keeps them. FSDP2 hands out the gradients of one ``fully_shard``
group as views of one reduce-scatter output, end to end; :func:`ravine.pack_shards` lays the parameters of each
group end to end the same way. Each step, the runner finds the maximal runs of consecutive parameters whose
local shards *and* gradients both lie end to end in one storage and calls the compiled step once per run, on
those regions as flat buffers: with packed shards, about one call per FSDP2 group; without, one per tensor
(the same kernel, more calls). The state is ravine's own: one flat buffer per key for the whole batch, each
parameter's state a DTensor view of it, so ``state_dict`` and distributed checkpoints see DTensors as before.

Only elementwise math without whole-tensor reductions takes this path: a reduction over a local shard is not
the tensor's (those algorithms keep DTensor's eager path, whose reductions are global).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ravine.engine.flat import offsets_of, stack_steps, states_intact


def is_dtensor(t: Any) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "device_mesh")


def local(t: Tensor) -> Tensor:
    """A DTensor's local tensor (the storage the rank owns; writes to it are writes to the DTensor)."""
    return t._local_tensor


def fusable(p: Tensor) -> bool:
    """Can ``p`` (a DTensor) take the local-shard step: floating, no Partial placement, its gradient a DTensor
    of the same placements, both local tensors contiguous?"""
    grad = p.grad
    if not (is_dtensor(grad) and p.is_floating_point() and grad.placements == p.placements):
        return False
    if any(placement.is_partial() for placement in p.placements):
        return False
    return local(p).is_contiguous() and local(grad).is_contiguous()


def runs(tensors: list[list[Tensor]]) -> list[tuple[int, int]]:
    """``(start, stop)`` of the maximal runs of consecutive positions where every list's tensors lie end to end
    as views of one base tensor (``tensors``: one list per role, e.g. the local parameters and gradients).

    Views of one base share its storage, so a run can be read as one region of it. Tensors in one storage under
    different bases are not merged (one more call, never a wrong region)."""
    count = len(tensors[0])
    if not count:
        return []
    roles = []
    for ts in tensors:
        size = ts[0].element_size()
        starts = [t.data_ptr() for t in ts]
        ends = [start + t.numel() * size for start, t in zip(starts, ts, strict=True)]
        bases = [t if t._base is None else t._base for t in ts]
        roles.append((starts, ends, bases))
    bounds, start = [], 0
    for i in range(1, count):
        if not all(ends[i - 1] == starts[i] and bases[i - 1] is bases[i] for starts, ends, bases in roles):
            bounds.append((start, i))
            start = i
    bounds.append((start, count))
    return bounds


def region(tensors: list[Tensor]) -> Tensor:
    """The 1-D tensor spanning ``tensors``, which lie end to end in one storage."""
    first = tensors[0]
    return first.as_strided((sum(t.numel() for t in tensors),), (1,), first.storage_offset())


class ShardBatch:
    """The state of one batch of DTensor parameters in one flat buffer per key, each parameter's state a
    DTensor view of it; the parameters and gradients themselves are read where they lie at every step."""

    aligned = False  # never laid out for whole-tensor reductions: a shard's reduction is not its tensor's

    def __init__(self, params: list[Tensor], states: list[dict[str, Any]],
                 scalar_keys: tuple[str, ...] = (), count_steps: bool = False) -> None:
        from torch.distributed.tensor import DTensor

        self.params = params
        self.numels = [local(p).numel() for p in params]
        self.offsets = offsets = offsets_of(self.numels)
        keys = [k for k, v in states[0].items() if k != "step" and k not in scalar_keys and is_dtensor(v)]
        self.state_buffers: dict[str, Tensor] = {}
        self.state_views: dict[str, list[Tensor]] = {}
        for key in keys:
            first = local(states[0][key])
            buffer = torch.empty(offsets[-1], dtype=first.dtype, device=first.device)
            views = []
            for s, start, stop in zip(states, offsets, offsets[1:], strict=False):
                old = s[key]
                piece = buffer[start:stop].view(local(old).shape)
                piece.copy_(local(old))
                s[key] = DTensor.from_local(piece, old.device_mesh, old.placements, run_check=False,
                                            shape=old.shape, stride=old.stride())
                views.append(s[key])
            self.state_buffers[key] = buffer
            self.state_views[key] = views
        self.steps = stack_steps(states, self.state_views) if count_steps else None
        self.states = states

    def intact(self, all_states: dict[Tensor, Any]) -> bool:
        """Is every parameter's state still the one this batch holds (no reload, no state tensor replaced)?"""
        return states_intact(self.params, self.states, self.state_views, all_states)

    def release(self, keep: set[int]) -> None:
        """Dropped for a new batch: nothing to hand back (the state views keep their buffer alive)."""

    def pieces(self) -> list[tuple[Tensor, Tensor, dict[str, Tensor]]]:
        """This step's flat regions: per run of shards lying end to end, its parameters, gradients and state."""
        params = [local(p) for p in self.params]
        grads = [local(p.grad) for p in self.params]
        out = []
        for start, stop in runs([params, grads]):
            lo, hi = self.offsets[start], self.offsets[stop]
            if lo == hi:  # a rank whose shards of these tensors are empty
                continue
            state = {k: buffer[lo:hi] for k, buffer in self.state_buffers.items()}
            out.append((region(params[start:stop]), region(grads[start:stop]), state))
        return out

"""FSDP2 helpers: :func:`pack_shards` lays each ``fully_shard`` group's local shards end to end in one buffer.

FSDP2 keeps every parameter's shard in an allocation of its own, so a fused optimizer step meets the shards one
tensor at a time. The gradients of a group already arrive end to end (views of one reduce-scatter output); once
the parameters of the group lie end to end too, ravine's fused step (``fused=True``) updates the whole group's
shards with one call of its compiled kernel (see :mod:`ravine.engine.local_shards`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ravine.engine.local_shards import local


def pack_shards(model: nn.Module) -> int:
    """Move the local shards of each FSDP2 group of ``model`` into one buffer per group (and device and dtype),
    in the order FSDP2 lays out the group's gradients; returns how many parameters were moved.

    Call it after ``fully_shard`` and before training (or between steps); the parameter objects stay the same,
    so an optimizer built before keeps working. Values do not change, and nothing else does: FSDP2 all-gathers
    from the new buffers and hands out gradients as before. A parameter whose shards are uneven across ranks
    (its sharded dimension not divisible by the world size) is left where it is, because FSDP2 keeps such a
    shard padded in a buffer of its own; it still trains, as one more kernel call per step.

    Raises ``ValueError`` if no module of ``model`` is an FSDP2 module (call ``fully_shard`` first), and
    ``RuntimeError`` if called between a forward and its backward (the model holds unsharded parameters then).
    """
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    roots = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not roots:
        raise ValueError(f"pack_shards: no module of this {type(model).__name__} is an FSDP2 module "
                         "(call torch.distributed.fsdp.fully_shard on it first)")
    claimed: set[int] = set()
    moved = 0
    for group_root in reversed(roots):  # nested groups first: a group manages what no inner group took
        even: list[nn.Parameter] = []
        for owner_name, owner in group_root.named_modules():
            for name, p in owner.named_parameters(recurse=False):
                if id(p) in claimed:
                    continue
                claimed.add(id(p))
                if not isinstance(p, DTensor):
                    raise RuntimeError(
                        f"pack_shards: parameter {'.'.join(filter(None, (owner_name, name)))!r} is not a sharded "
                        "DTensor; call pack_shards between steps, not between a forward and its backward")
                if _even(p):
                    even.append(p)
        moved += _pack(even)
        if even:
            # FSDP2 re-reads each parameter's local tensor after load_state_dict (its own post-hook), so it
            # all-gathers from the new buffer from now on.
            group_root.load_state_dict({}, strict=False)
    return moved


def _even(p: Any) -> bool:
    """Does every rank hold an equal, unpadded share of ``p`` (so FSDP2 all-gathers from the shard itself)?"""
    from torch.distributed.tensor import Shard

    shard = local(p)
    for mesh_dim, placement in enumerate(p.placements):
        if isinstance(placement, Shard) and shard.size(placement.dim) * p.device_mesh.size(mesh_dim) != p.size(
                placement.dim):
            return False
    return shard.is_contiguous()


def _pack(params: list[Any]) -> int:
    by_kind: dict[tuple[torch.device, torch.dtype], list[Any]] = {}
    for p in params:
        by_kind.setdefault((local(p).device, local(p).dtype), []).append(p)
    for (device, dtype), batch in by_kind.items():
        buffer = torch.empty(sum(local(p).numel() for p in batch), dtype=dtype, device=device)
        start = 0
        with torch.no_grad():
            for p in batch:
                old = local(p)
                view = buffer[start:start + old.numel()].view(old.shape)
                view.copy_(old)
                p._local_tensor = view
                start += old.numel()
    return len(params)

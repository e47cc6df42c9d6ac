"""Tensorwise math on sharded parameters: each tensor is gathered whole on one owner rank, updated there, and
its shards are scattered back.

Under FSDP2 every rank holds a slice of each matrix (a DTensor with a ``Shard`` placement). Elementwise math
runs on the slices as they are; math that needs the whole matrix (Newton–Schulz orthogonalisation) would be
wrong on a slice. Here the parameters of a step are dealt round-robin to the ranks of their mesh; for each one
the owner gathers the parameter, its gradient and its parameter-shaped state, runs the algorithm's ordinary
``update`` on the whole tensors, and scatters every rank's slice back. Each matrix is thus orthogonalised
exactly once, and the results equal a single-process run. State that is not parameter-shaped (0-d counters)
is kept on every rank and sent from the owner after the update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from ravine.engine.views import Hyper

if TYPE_CHECKING:
    from collections.abc import Callable

    from ravine.engine.optimizer import Optimizer


def shard_dim(p: Tensor) -> int | None:
    """The dimension a DTensor parameter is sharded along, or None for a whole tensor."""
    dims = [pl.dim for pl in getattr(p, "placements", ()) if type(pl).__name__ == "Shard"]
    if len(dims) > 1 or (dims and p.device_mesh.ndim != 1):
        raise RuntimeError(
            f"{tuple(p.shape)} parameter with placements {tuple(p.placements)}: ravine gathers tensorwise "
            "updates over one-dimensional meshes sharded on one dimension (FSDP2's layout) only"
        )
    return dims[0] if dims else None


class _Exchange:
    """Moving one tensor's slices between the ranks of its mesh and its owner, in equal-size (padded) pieces
    cut as ``torch.chunk`` (and DTensor's ``Shard``) cuts them."""

    def __init__(self, p: Tensor, dim: int, index: int) -> None:
        self.group = p.device_mesh.get_group()
        self.world, self.me = dist.get_world_size(self.group), dist.get_rank(self.group)
        self.owner = index % self.world  # round-robin: each rank orthogonalises every world-th tensor
        self.owner_global = dist.get_global_rank(self.group, self.owner)
        self.is_owner = self.me == self.owner
        self.dim = dim
        self.chunk = -(-p.shape[dim] // self.world)
        self.sizes = [max(0, min(self.chunk, p.shape[dim] - r * self.chunk)) for r in range(self.world)]

    def _padded(self, local: Tensor) -> Tensor:
        missing = self.chunk - local.shape[self.dim]
        if missing == 0:
            return local.contiguous()
        pad_shape = list(local.shape)
        pad_shape[self.dim] = missing
        return torch.cat([local, local.new_zeros(pad_shape)], dim=self.dim)

    def gather(self, local: Tensor) -> Tensor | None:
        """The whole tensor on the owner (None elsewhere), from every rank's slice."""
        piece = self._padded(local)
        pieces = [torch.empty_like(piece) for _ in range(self.world)] if self.is_owner else None
        dist.gather(piece, pieces, dst=self.owner_global, group=self.group)
        if pieces is None:
            return None
        return torch.cat([x.narrow(self.dim, 0, n) for x, n in zip(pieces, self.sizes, strict=True)], dim=self.dim)

    def scatter(self, whole: Tensor | None, local: Tensor) -> None:
        """Each rank's slice of the owner's ``whole`` tensor, written into ``local``."""
        pieces = None
        if whole is not None:
            starts = [sum(self.sizes[:r]) for r in range(self.world)]
            pieces = [self._padded(whole.narrow(self.dim, s, n)) for s, n in zip(starts, self.sizes, strict=True)]
        piece = torch.empty_like(self._padded(local))
        dist.scatter(piece, pieces, src=self.owner_global, group=self.group)
        local.copy_(piece.narrow(self.dim, 0, local.shape[self.dim]))


def run_on_owners(optimizer: Optimizer, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
    """One step of ``update`` for sharded parameters, each computed whole on one owner rank."""
    from ravine.engine import eager

    for index, p in enumerate(params):
        dim = shard_dim(p)
        assert dim is not None
        exchange = _Exchange(p, dim, index)
        state = optimizer.state[p] if optimizer.state.get(p) else {}
        sharded_keys = [k for k, v in state.items() if torch.is_tensor(v) and v.shape == p.shape
                        and hasattr(v, "to_local")]
        plain_keys = [k for k, v in state.items() if torch.is_tensor(v) and k not in sharded_keys]
        local_p = p.to_local()
        full_p = exchange.gather(local_p)
        full_g = exchange.gather(p.grad.to_local())
        full_state: dict[str, Any] = {k: exchange.gather(state[k].to_local()) for k in sharded_keys}
        if exchange.is_owner:
            assert full_p is not None and full_g is not None
            full_state.update({k: state[k] for k in plain_keys})
            dtype = optimizer.compute_dtype(full_p, group)
            work, grad = full_p.to(dtype), full_g.to(dtype)
            if group["maximize"]:
                grad = grad.neg()
            views = eager.advance(optimizer, [full_state], hp, batched=False, is_complex=False)
            optimizer.update(work, grad, views, hp)
            full_p = work.to(full_p.dtype)
            new_keys = [k for k in full_state if k not in state]
            if new_keys:
                raise RuntimeError(f"{type(optimizer).__name__} created state {new_keys} during a sharded step; "
                                   "tensorwise algorithms must create their state in init_state")
        exchange.scatter(full_p, local_p)
        for key in sharded_keys:
            exchange.scatter(full_state.get(key), state[key].to_local())
        for key in plain_keys:
            dist.broadcast(state[key], src=exchange.owner_global, group=exchange.group)


def run_split(optimizer: Optimizer, params: list[Tensor], run: Callable[[list[Tensor]], None]) -> None:
    """``ddp_split=True``: parameters every rank holds whole and alike (DDP's, after its gradient average).

    Each rank runs the group's ordinary path (``run``) on every world-th parameter only, so each matrix is
    orthogonalised once in the world instead of on every rank; then every parameter and its state are
    broadcast from the rank that updated them. The ranks end the step identical to a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("ddp_split=True splits the step across the ranks of torch.distributed, which is not "
                           "initialised: call dist.init_process_group (as DDP needs) or leave ddp_split unset")
    world, me = dist.get_world_size(), dist.get_rank()
    owned = params[me::world]
    if owned:
        run(owned)
    for index, p in enumerate(params):
        owner = index % world
        dist.broadcast(p.detach(), src=owner)
        for value in optimizer.state.get(p, {}).values():
            if torch.is_tensor(value):
                dist.broadcast(value, src=owner)


__all__ = ["run_on_owners", "run_split", "shard_dim"]

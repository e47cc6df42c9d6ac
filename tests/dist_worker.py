"""Worker for test_distributed.py, run as ``torchrun --nproc_per_node 2 dist_worker.py OUT_DIR`` (gloo, CPU).

For every optimizer configuration it trains the same model four ways — DDP, ZeroRedundancyOptimizer (with a
consolidate → save → load round trip half-way), FSDP2 (DTensor parameters) and FSDP2 with a distributed
checkpoint saved and loaded half-way — and rank 0 saves the full parameters to OUT_DIR/<scenario>-<config>.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import ravine

STEPS, HALF = 20, 10
GLOBAL_BATCH = 16
MAX_NORM = 0.1  # small enough that clipping is active: the global norm across ranks matters
BASE = {
    "SGD": (ravine.SGD, {"lr": 0.05, "momentum": 0.9}),
    "Adagrad": (ravine.Adagrad, {"lr": 0.05}),
    "RMSprop": (ravine.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    "Adam": (ravine.Adam, {"lr": 0.01, "amsgrad": True}),
    "AdamW": (ravine.AdamW, {"lr": 0.01}),
    "Lion": (ravine.Lion, {"lr": 1e-3, "weight_decay": 0.1}),
    "ADOPT": (ravine.ADOPT, {"lr": 0.01}),
    "Lookahead": (None, {"lr": 0.01}),
    "Adadelta": (ravine.Adadelta, {"lr": 0.5}),
    "Adamax": (ravine.Adamax, {"lr": 0.01}),
    "ASGD": (ravine.ASGD, {"lr": 0.05, "t0": 5.0}),
    "NAdam": (ravine.NAdam, {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    "RAdam": (ravine.RAdam, {"lr": 0.01}),
    "Rprop": (ravine.Rprop, {"lr": 0.01}),
    "Muon": (ravine.Muon, {"lr": 0.02}),  # on the matrices-only model (make_model("Muon"))
    "MuonWithAuxAdam": (None, {}),
    "ScheduleFreeAdamW": (None, {"lr": 0.01, "warmup_steps": 5, "weight_decay": 0.01}),
    "ScheduleFreeRAdam": (None, {"lr": 0.01, "weight_decay": 0.01}),
    "Adafactor": (ravine.Adafactor, {"lr": 0.01}),
    "AdamW-int8": (ravine.AdamW, {"lr": 0.01, "state_dtype": "int8"}),  # 8-bit state: codes + block maxima
    "AdamW-bf16state": (ravine.AdamW, {"lr": 0.01, "state_dtype": torch.bfloat16}),  # stochastic rounding
}
# Refused on FSDP2 shards, with the error that says why: row/column statistics of a slice are not the matrix's
# (Muon's Newton–Schulz gathers each sharded matrix on one owner rank instead: ravine.engine.sharded); compact
# state is encoded per tensor, in blocks a shard would cut.
REFUSES_SHARDS = {"Adafactor": r"cannot factor a sharded", "AdamW-int8": r"state_dtype='int8'.*FSDP2 shards",
                  "AdamW-bf16state": r"state_dtype='bfloat16'.*FSDP2 shards"}
PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}


class LookaheadAdamW(ravine.Lookahead):
    """Lookahead(AdamW) with an optimizer-class signature, as ZeroRedundancyOptimizer constructs it."""

    def __init__(self, params, **kwargs):
        super().__init__(ravine.AdamW(params, **kwargs), k=3)


class TrainingScheduleFreeAdamW(ravine.ScheduleFreeAdamW):
    """Schedule-Free AdamW put in train mode when built (ZeroRedundancyOptimizer builds it on every rank)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.train()


class TrainingScheduleFreeRAdam(ravine.ScheduleFreeRAdam):
    """Schedule-Free RAdam put in train mode when built (ZeroRedundancyOptimizer builds it on every rank)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.train()


def optimizer_class(name: str):
    special = {"Lookahead": LookaheadAdamW, "MuonWithAuxAdam": ravine.MuonWithAuxAdam,
               "ScheduleFreeAdamW": TrainingScheduleFreeAdamW, "ScheduleFreeRAdam": TrainingScheduleFreeRAdam}
    return special.get(name) or BASE[name][0]


def params_of(name: str, model: torch.nn.Module):
    """What the optimizer is given: the parameters, or for MuonWithAuxAdam its groups (matrices to Muon, the
    rest to AdamW; this model has no embedding or head to route)."""
    if name != "MuonWithAuxAdam":
        return model.parameters()
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "use_muon": True, "lr": 0.02},
            {"params": [p for p in params if p.ndim < 2], "use_muon": False, "lr": 0.01}]


CONFIGS = {f"{name}-{path}": (name, path) for name in BASE for path in PATHS
           if name == "Lookahead" or path in optimizer_class(name).supported_paths()}


def kwargs_for(name: str, path: str) -> dict:
    return {**BASE[name][1], **PATHS[path]}


def make_model(name: str | None = None) -> torch.nn.Module:
    """The test model; for Muon (2-D parameters only) without biases and LayerNorm weights."""
    torch.manual_seed(0)
    vectors = name != "Muon"
    return torch.nn.Sequential(torch.nn.Linear(8, 16, bias=vectors), torch.nn.GELU(),
                               torch.nn.LayerNorm(16, elementwise_affine=vectors),
                               torch.nn.Linear(16, 1, bias=vectors))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(GLOBAL_BATCH, 8, generator=torch.Generator().manual_seed(100 + step))
    return x, torch.sin(x.sum(1, keepdim=True))


def train_step(model, optimizer, step: int, rows: slice) -> None:
    x, y = batch(step)
    optimizer.zero_grad()
    # MuonWithAuxAdam mixes AdamW (ε = 1e-10) with bfloat16 Newton–Schulz: a last-bit difference in a gradient
    # grows until it flips a bfloat16 rounding (~2e-3 after 20 steps). So for it the single-process run sums
    # the two ranks' half-batch gradients as DDP does (exactly: halving is exact), and global-norm clipping,
    # whose sharded sum of squares rounds differently under FSDP2, is left out.
    bf16_sensitive = isinstance(getattr(optimizer, "optim", optimizer), ravine.MuonWithAuxAdam)
    halves = [slice(0, GLOBAL_BATCH // 2), slice(GLOBAL_BATCH // 2, None)]
    for part in halves if bf16_sensitive and rows == slice(None) else [rows]:
        loss = torch.nn.functional.mse_loss(model(x[part]), y[part])
        (loss / 2 if part is not rows else loss).backward()
    if not bf16_sensitive:
        ravine.grads.clip_grad_norm_(model.parameters(), MAX_NORM)
    optimizer.step()


def full_params(model) -> list[torch.Tensor]:
    return [(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for p in model.parameters()]


# Whole-tensor algorithms that also run with ddp_split=True under DDP (each matrix updated on one rank).
SPLITS = {"Muon", "Adafactor"}


def ddp(name, path, rows, split: bool = False):
    model = DistributedDataParallel(make_model(name))
    options = {**kwargs_for(name, path), **({"ddp_split": True} if split else {})}
    optimizer = optimizer_class(name)(params_of(name, model), **options)
    for step in range(STEPS):
        train_step(model, optimizer, step, rows)
    return full_params(model.module)


def zero(name, path, rows, folder: Path, key: str):
    def build():
        model = DistributedDataParallel(make_model(name))
        optimizer = ZeroRedundancyOptimizer(params_of(name, model.module), optimizer_class=optimizer_class(name),
                                            **kwargs_for(name, path))
        return model, optimizer

    uninterrupted_model, uninterrupted = build()
    for step in range(STEPS):
        train_step(uninterrupted_model, uninterrupted, step, rows)
    model, optimizer = build()
    for step in range(HALF):
        train_step(model, optimizer, step, rows)
    optimizer.consolidate_state_dict(to=0)
    checkpoint = folder / f"zero-{key}.ckpt"
    if dist.get_rank() == 0:
        torch.save({"model": model.module.state_dict(), "optim": optimizer.state_dict()}, checkpoint)
    dist.barrier()
    resumed_model, resumed = build()
    saved = torch.load(checkpoint, weights_only=True)
    resumed_model.module.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optim"])
    for step in range(HALF, STEPS):
        train_step(resumed_model, resumed, step, rows)
    return full_params(uninterrupted_model.module), full_params(resumed_model.module)


def sharded(name, path):
    model = make_model(name)
    fully_shard(model[0])
    fully_shard(model[3])
    fully_shard(model)
    if path == "fused":  # each group's shards in one buffer: the fused step's kernel runs once per group
        ravine.pack_shards(model)
    return model, optimizer_class(name)(params_of(name, model), **kwargs_for(name, path))


# Algorithms whose fused step on FSDP2 shards is checked against the same step on plain tensors.
LOCAL_SHARD_ALGORITHMS = {"SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True}, "AdamW": {"lr": 0.01},
                          "NAdam": {"lr": 0.01}, "Lion": {"lr": 1e-3, "weight_decay": 0.1}}


def local_shard_steps(rows) -> dict:
    """``fused=True`` on FSDP2 shards, packed by pack_shards and not, against the fused step on plain tensors
    holding this rank's shards with the same gradients, over 4 steps: the local shards must be equal bit for
    bit. Records how many kernel calls (runs of shards end to end) a packed and an unpacked step took."""
    def build(pack: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 16),
                                    torch.nn.LayerNorm(16), torch.nn.Linear(16, 1))  # the last is uneven
        fully_shard(model[0])
        fully_shard(model[2])
        fully_shard(model)
        moved = ravine.pack_shards(model) if pack else 0
        return model, moved

    out: dict = {}
    for name, options in LOCAL_SHARD_ALGORITHMS.items():
        (packed, moved), (unpacked, _) = build(True), build(False)
        plain = [p.to_local().detach().clone().requires_grad_() for p in packed.parameters()]
        cls = getattr(ravine, name)
        optimizers = [cls(m.parameters(), fused=True, **options) for m in (packed, unpacked)]
        reference = cls(plain, fused=True, **options)
        equal = True
        for step in range(4):
            x, y = batch(step)
            for model, optimizer in zip((packed, unpacked), optimizers, strict=True):
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
            for p, q in zip(plain, packed.parameters(), strict=True):
                p.grad = q.grad.to_local().clone()
            for optimizer in (*optimizers, reference):
                optimizer.step()
            for a, b, c in zip(packed.parameters(), unpacked.parameters(), plain, strict=True):
                equal = equal and torch.equal(a.to_local(), c.detach()) and torch.equal(b.to_local(), c.detach())
        calls = [sum(len(b.pieces()) for b in o._fused.flat_groups.values()) for o in optimizers]
        out[name] = {"equal": equal, "moved": moved, "packed_calls": calls[0], "unpacked_calls": calls[1],
                     "tensors": sum(1 for p in plain if p.numel())}
    return out


def fsdp(name, path, rows):
    model, optimizer = sharded(name, path)
    assert type(next(model.parameters())).__name__ == "DTensor"
    for step in range(STEPS):
        train_step(model, optimizer, step, rows)
    return full_params(model)


def fsdp_dcp(name, path, rows, folder: Path, key: str):
    model, optimizer = sharded(name, path)
    for step in range(HALF):
        train_step(model, optimizer, step, rows)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(folder / f"dcp-{key}"))
    fresh_model, fresh = sharded(name, path)
    before = full_params(fresh_model)
    model_sd, optim_sd = get_state_dict(fresh_model, fresh)  # DCP's lr-0 initialisation step runs here
    after = full_params(fresh_model)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), "DCP's init step moved parameters"
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(folder / f"dcp-{key}"))
    set_state_dict(fresh_model, fresh, model_state_dict=state["model"], optim_state_dict=state["optim"])
    for step in range(HALF, STEPS):
        train_step(fresh_model, fresh, step, rows)
    return full_params(fresh_model)


def refusal(name: str, path: str) -> str:
    """The error an algorithm that needs whole matrices raises on FSDP2 shards (it must not step them)."""
    model, optimizer = sharded(name, path)
    try:
        train_step(model, optimizer, 0, slice(None))
    except (RuntimeError, ValueError) as error:
        return str(error)
    return ""


def step_in_backward_refusal(rows) -> str:
    """The error step_in_backward raises under DDP (it would update with each rank's own gradient)."""
    model = DistributedDataParallel(make_model())
    optimizer = ravine.AdamW(model.parameters(), lr=0.01, step_in_backward=True)
    try:
        train_step(model, optimizer, 0, rows)
    except RuntimeError as error:
        return str(error)
    return ""


def main(folder: Path, only: list[str]) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    share = GLOBAL_BATCH // world
    rows = slice(rank * share, (rank + 1) * share)
    try:
        refusal_text = step_in_backward_refusal(rows)
        if rank == 0:
            (folder / "step_in_backward_refusal.txt").write_text(refusal_text)
        torch.save(local_shard_steps(rows), folder / f"local_shards-rank{rank}.pt")
        for key, (name, path) in CONFIGS.items():
            if only and key not in only:
                continue
            zero_full, zero_resumed = zero(name, path, rows, folder, key)
            results = {"ddp": ddp(name, path, rows), "zero": zero_full, "zero_resumed": zero_resumed}
            if name in SPLITS:
                results["ddp_split"] = ddp(name, path, rows, split=True)
            if name in REFUSES_SHARDS:
                results["fsdp_error"] = refusal(name, path)
            else:
                results["fsdp"] = fsdp(name, path, rows)
                results["dcp"] = fsdp_dcp(name, path, rows, folder, key)
            if rank == 0:
                torch.save(results, folder / f"{key}.pt")
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), sys.argv[2:])

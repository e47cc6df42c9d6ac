"""Train a small character-level transformer with FSDP2 + a ravine optimizer, resumable from DCP checkpoints.

    torchrun --nproc_per_node 2 examples/fsdp_train.py                 # CPU (gloo); on GPUs it uses nccl
    torchrun --nproc_per_node 2 examples/fsdp_train.py --resume        # continue from the last checkpoint

Text: the Python standard library's own ``os.py`` and ``argparse.py`` source files, read at run time.
Everything a long run needs is here: parameters sharded with ``fully_shard`` (DTensor), AdamW with the usual
weight-decay groups, linear warmup + cosine decay, global-norm gradient clipping across shards, and
distributed checkpoints (model, optimizer, scheduler, step) written by every rank with
``torch.distributed.checkpoint``.
"""

from __future__ import annotations

import argparse
import argparse as _argparse_module
import os
import os as _os_module
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard

import ravine


def corpus() -> torch.Tensor:
    text = "".join(Path(m.__file__).read_text() for m in (_os_module, _argparse_module))
    return torch.tensor([min(ord(c), 127) for c in text], dtype=torch.long)


class TinyGPT(torch.nn.Module):
    def __init__(self, vocab: int = 128, d: int = 64, layers: int = 2, context: int = 64) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.position = torch.nn.Parameter(torch.zeros(context, d))
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=4 * d, dropout=0.0, batch_first=True,
                                             norm_first=True)  # no dropout: resumes are exact without RNG state
            for _ in range(layers)
        )
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h, src_mask=self.mask[: tokens.shape[1], : tokens.shape[1]], is_causal=True)
        return self.head(self.norm(h))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16, help="sequences per rank")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--checkpoints", default="checkpoints/fsdp")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args()

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
    torch.manual_seed(0)
    model = TinyGPT(context=args.context).to(device)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    optimizer = ravine.AdamW(ravine.param_groups(model, weight_decay=0.1), lr=args.lr)
    scheduler = ravine.schedules.warmup_cosine(optimizer, warmup_steps=max(1, args.steps // 10),
                                               total_steps=args.steps, min_lr=args.lr / 10)
    start = 0
    folder = Path(args.checkpoints)
    if args.resume and folder.exists():
        latest = max((p for p in folder.iterdir() if p.name.startswith("step_")), key=lambda p: int(p.name[5:]))
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd, "scheduler": scheduler.state_dict(), "step": 0}
        dcp.load(state, checkpoint_id=str(latest))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if rank == 0:
            print(f"resumed from {latest} at step {start}", flush=True)

    data = corpus()
    for step in range(start, args.steps):
        g = torch.Generator().manual_seed(step * 1000 + rank)  # each rank its own sequences, reproducibly
        offsets = torch.randint(0, len(data) - args.context - 1, (args.batch,), generator=g)
        window = torch.stack([data[o : o + args.context + 1] for o in offsets.tolist()]).to(device)
        optimizer.zero_grad()
        logits = model(window[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        loss.backward()
        norm = ravine.grads.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        scheduler.step()
        if hasattr(norm, "full_tensor"):  # the global norm comes back as a replicated DTensor
            norm = norm.full_tensor()
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}  grad-norm {norm.item():.3f}"
                  f"  lr {scheduler.get_last_lr()[0]:.2e}", flush=True)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            model_sd, optim_sd = get_state_dict(model, optimizer)
            dcp.save({"model": model_sd, "optim": optim_sd, "scheduler": scheduler.state_dict(), "step": step + 1},
                     checkpoint_id=str(folder / f"step_{step + 1}"))
    # every rank finishes its collectives before any tears gloo down (a rank leaving early can abort the
    # other's worker threads: "terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

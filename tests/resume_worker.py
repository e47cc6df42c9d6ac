"""Worker for test_resume_in_a_fresh_process.py: ``python resume_worker.py first|resume DIR``.

``first`` trains every configuration N + M steps without a break (saving the result) and, separately, N steps
(saving a checkpoint of model, optimizer, scheduler and GradScaler). ``resume``, run in a new process, loads
each checkpoint with ``torch.load(weights_only=True)``, trains M more steps and saves the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import ravine

N, M = 6, 6
OPTIMIZERS = {
    "SGD": lambda p, **f: ravine.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **f),
    "Adagrad": lambda p, **f: ravine.Adagrad(p, lr=0.05, **f),
    "RMSprop": lambda p, **f: ravine.RMSprop(p, lr=0.01, momentum=0.5, centered=True, **f),
    "Adam": lambda p, **f: ravine.Adam(p, lr=0.01, amsgrad=True, **f),
    "AdamW": lambda p, **f: ravine.AdamW(p, lr=0.01, **f),
    "Lion": lambda p, **f: ravine.Lion(p, lr=1e-3, weight_decay=0.1, **f),
    "ADOPT": lambda p, **f: ravine.ADOPT(p, lr=0.01, **f),
    "Lookahead": lambda p, **f: ravine.Lookahead(ravine.AdamW(p, lr=0.01, **f), k=4),
    "Adadelta": lambda p, **f: ravine.Adadelta(p, lr=0.5, weight_decay=0.01, **f),
    "Adamax": lambda p, **f: ravine.Adamax(p, lr=0.01, **f),
    "ASGD": lambda p, **f: ravine.ASGD(p, lr=0.05, t0=4.0, **f),
    "NAdam": lambda p, **f: ravine.NAdam(p, lr=0.01, **f),
    "RAdam": lambda p, **f: ravine.RAdam(p, lr=0.01, betas=(0.9, 0.9), **f),
    "Rprop": lambda p, **f: ravine.Rprop(p, lr=0.01, **f),
    "Adafactor": lambda p, **f: ravine.Adafactor(p, lr=0.01, **f),
}
PATHS = {"per-tensor": {"foreach": False}, "multi-tensor": {"foreach": True}, "fused": {"fused": True}}
CONFIGS = {f"{name}-{path}": (name, path) for name in OPTIMIZERS for path in PATHS
           if not (name == "Adafactor" and path == "fused")}  # tensorwise math: never fused


def build(name: str, path: str):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.LayerNorm(16),
                                torch.nn.Linear(16, 1))
    optimizer = OPTIMIZERS[name](list(model.parameters()), **PATHS[path])
    scheduler = ravine.schedules.warmup_cosine(optimizer, warmup_steps=3, total_steps=N + M)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    return model, optimizer, scheduler, scaler


def train(parts, steps) -> None:
    model, optimizer, scheduler, scaler = parts
    for step in steps:
        x = torch.randn(32, 6, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        ravine.grads.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()


def snapshot(parts) -> dict:
    model, optimizer, _, _ = parts
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def main(mode: str, folder: Path) -> None:
    for key, (name, path) in CONFIGS.items():
        if mode == "first":
            full = build(name, path)
            train(full, range(N + M))
            torch.save(snapshot(full), folder / f"{key}-full.pt")
            first = build(name, path)
            train(first, range(N))
            model, optimizer, scheduler, scaler = first
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()},
                       folder / f"{key}-ckpt.pt")
        else:
            resumed = build(name, path)
            checkpoint = torch.load(folder / f"{key}-ckpt.pt", weights_only=True)
            for part, field in zip(resumed, ("model", "optimizer", "scheduler", "scaler"), strict=True):
                part.load_state_dict(checkpoint[field])
            train(resumed, range(N, N + M))
            torch.save(snapshot(resumed), folder / f"{key}-resumed.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

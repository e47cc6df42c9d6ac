"""What a fused step costs when some parameters have no gradient (frozen, or unused this step).

Times ravine.AdamW(fused=True) on the step benchmark's transformer-shaped parameter set in three situations,
interleaved round by round (this machine is noisy: only ratios taken within a round mean much):

* all: every parameter has a gradient (the flat buffer is stepped whole);
* frozen: the same 10% of the tensors never have one (after the first step they live outside the flat buffer);
* alternating: one tensor has a gradient only on every other step, so the fused batch changes each step and
  its flat buffers are rebuilt (the worst case).

Also times a backward pass with and without the gradient-routing hooks the fused path puts on parameters.
Usage: python benchmarks/missing_grads.py [--scale 0.5] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import ravine
from ravine.bench.step import transformer_params


def _timed(fn, steps: int) -> float:
    start = time.perf_counter()
    for step in range(steps):
        fn(step)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    setups = {}
    for name in ("all", "frozen", "alternating"):
        params = transformer_params(args.scale)
        grads = [torch.randn_like(p) * 1e-3 for p in params]
        optimizer = ravine.AdamW(params, lr=1e-3, fused=True)
        frozen = set(range(0, len(params), 10)) if name == "frozen" else set()

        def step(i, params=params, grads=grads, optimizer=optimizer, frozen=frozen, name=name):
            for k, (p, g) in enumerate(zip(params, grads, strict=True)):
                missing = k in frozen or (name == "alternating" and k == 5 and i % 2)
                p.grad = None if missing else g
            optimizer.step()

        for i in range(4):  # compile and settle
            step(i)
        setups[name] = step

    model = torch.nn.Sequential(*(torch.nn.Linear(256, 256) for _ in range(8)))
    hooked = torch.nn.Sequential(*(torch.nn.Linear(256, 256) for _ in range(8)))
    ravine.AdamW(hooked.parameters(), fused=True).step()  # no grads yet: nothing happens, so build the buffers:
    for p in hooked.parameters():
        p.grad = torch.zeros_like(p)
    hooked_opt = ravine.AdamW(hooked.parameters(), fused=True)
    hooked_opt.step()
    x = torch.randn(64, 256)

    def backward(m, opt=None):
        def run(_):
            if opt is not None:
                opt.zero_grad()
            else:
                m.zero_grad()
            m(x).sum().backward()
        return run

    rounds: dict[str, list[float]] = {k: [] for k in ("all", "frozen", "alternating", "plain bwd", "hooked bwd")}
    for _ in range(args.rounds):
        for name, fn in setups.items():
            rounds[name].append(_timed(fn, args.steps))
        rounds["plain bwd"].append(_timed(backward(model), args.steps))
        rounds["hooked bwd"].append(_timed(backward(hooked, hooked_opt), args.steps))
    numel = sum(p.numel() for p in transformer_params(args.scale, "meta"))
    print(f"ravine.AdamW(fused=True), {numel / 1e6:.1f} M parameters in 97 tensors, {args.rounds} rounds of "
          f"{args.steps} steps, torch {torch.__version__}")
    print("| case | median ms/step | median ratio to 'all' (per round) |")
    print("|---|---:|---:|")
    for name in ("all", "frozen", "alternating"):
        ratio = statistics.median(a / b for a, b in zip(rounds[name], rounds["all"], strict=True))
        print(f"| {name} | {statistics.median(rounds[name]):.1f} | {ratio:.2f}× |")
    ratio = statistics.median(a / b for a, b in zip(rounds["hooked bwd"], rounds["plain bwd"], strict=True))
    print(f"| backward, 8×Linear(256) with gradient-routing hooks vs without | "
          f"{statistics.median(rounds['hooked bwd']):.2f} vs {statistics.median(rounds['plain bwd']):.2f} | "
          f"{ratio:.2f}× |")


if __name__ == "__main__":
    main()

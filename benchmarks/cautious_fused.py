"""The fused cautious step against the same fused step without the modifier, for each optimizer it composes with.

``cautious`` zeroes the update where it disagrees with the gradient and rescales each tensor by
``n / (kept + 1)``: a per-tensor count that must be known before any parameter is written, so a fused step
takes two passes over the gradient and state (count, then update). Each round times a block of 5 steps of the
bare optimizer and of its cautious form, on separate copies of the transformer-shaped set of ``ravine bench
step`` (29.4 M float32 parameters in 97 tensors) with fixed gradients; the ratio is the median of the per-round
ratios. Also prints the least bytes per parameter each step must move, so the ratio can be read against its
floor (two passes: the second moves the bare step's bytes, the first reads the gradient and the state the
update needs).

Usage: ``python benchmarks/cautious_fused.py [--rounds 10]``. It runs on any commit with ``cautious=``, so the
same command measures before and after a change to the fused path.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import ravine
from ravine.bench.step import transformer_params

# (name, class, options, bytes per parameter of the bare step, extra bytes the counting pass reads)
CASES = [
    ("AdamW", ravine.AdamW, {"lr": 1e-3}, 28, 12),  # g, m, v read to count
    ("Lion", ravine.Lion, {"lr": 1e-4}, 20, 8),  # g, m
    ("SGD-momentum", ravine.SGD, {"lr": 1e-2, "momentum": 0.9}, 20, 8),  # g, buffer
]


def build(cls, options: dict, cautious: bool) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(t) for t in transformer_params()]
    generator = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)
    optimizer = cls(params, fused=True, cautious=cautious, **options)
    for _ in range(3):  # the first (eager) step, compilation, warm-up
        optimizer.step()
    return optimizer


def block(optimizer: torch.optim.Optimizer, steps: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds of 5 steps each")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print("| optimizer | bare ms | cautious ms | cautious / bare | byte floor |")
    print("|---|---:|---:|---:|---:|")
    for name, cls, options, bare_bytes, count_bytes in CASES:
        bare, cautious = build(cls, options, False), build(cls, options, True)
        times: dict[str, list[float]] = {"bare": [], "cautious": []}
        ratios = []
        for r in range(args.rounds):
            order = [("bare", bare), ("cautious", cautious)][:: 1 if r % 2 == 0 else -1]
            for label, optimizer in order:
                times[label].append(block(optimizer))
            ratios.append(times["cautious"][-1] / times["bare"][-1])
        floor = (bare_bytes + count_bytes) / bare_bytes
        print(f"| {name} | {statistics.median(times['bare']) * 1e3:.1f} | "
              f"{statistics.median(times['cautious']) * 1e3:.1f} | {statistics.median(ratios):.2f}× | "
              f"{floor:.2f}× |", flush=True)
        del bare, cautious


if __name__ == "__main__":
    main()

"""Where the fused 8-bit AdamW step spends its time: compiled kernels against the Python around each call.

The 29.4 M-parameter transformer set of ``ravine bench step`` (97 tensors; with 8-bit state the fused step makes
one compiled call per tensor, plus one per partial last block), stepped with ``state_dtype="int8"`` and, for
comparison, with float32 state. A profile of the 8-bit steps splits the kernels ("Call CompiledFxGraph", self
time) from the rest. Usage: python benchmarks/compact_step_profile.py [--steps N]. Never a timed test.
"""

import argparse
import statistics
import time

import torch
from torch.profiler import profile

import ravine
from ravine.bench.step import transformer_params


def _ms_per_step(optimizer: torch.optim.Optimizer, steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    optimizers = {}
    for name, options in (("float32 state", {}), ("int8 state", {"state_dtype": "int8"})):
        params = transformer_params(1.0)
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizers[name] = ravine.AdamW(params, lr=1e-3, fused=True, **options)
        for _ in range(3):
            optimizers[name].step()
    numel = sum(p.numel() for p in optimizers["int8 state"].param_groups[0]["params"])
    for name, optimizer in optimizers.items():
        print(f"{name}: {_ms_per_step(optimizer, args.steps):.1f} ms per step (median of {args.steps})")
    with profile() as prof:
        for _ in range(args.steps):
            optimizers["int8 state"].step()
    events = prof.key_averages()
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith("## Call CompiledFxGraph")) / 1e3
    total = sum(e.self_cpu_time_total for e in events) / 1e3
    print(f"int8 state, profiled: {total / args.steps:.1f} ms per step, of which compiled kernels "
          f"{kernels / args.steps:.1f} ms ({kernels / args.steps / (numel / 1e6):.2f} ms per million elements) "
          f"and the Python around the calls {(total - kernels) / args.steps:.1f} ms")


if __name__ == "__main__":
    main()

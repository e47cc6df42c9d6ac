"""Compile cost of the fused step: first-step seconds, cold and warm cache, by number of tensors.

Each measurement runs in a fresh Python process; "cold" uses an empty inductor cache directory, "warm" reuses
the directory the cold run filled. The parameters total ``--numel`` elements split evenly over the tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch


def first_step_seconds(tensors: int, numel: int, algorithm: str) -> float:
    import ravine

    size = max(1, numel // tensors)
    params = [torch.randn(size, requires_grad=True) for _ in range(tensors)]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = getattr(ravine, algorithm)(params, fused=True)
    # A parameter's first step may create state per tensor; the second is the first compiled one.
    if optimizer.creates_state_in_update(ravine.engine.Hyper(optimizer.param_groups[0])):
        optimizer.step()
    start = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start


def measure(tensors: int, numel: int, algorithm: str, cache_dir: str) -> float:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    code = (f"from ravine.bench.compile import first_step_seconds; "
            f"print(first_step_seconds({tensors}, {numel}, {algorithm!r}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ravine bench compile", description=__doc__)
    parser.add_argument("--tensors", default="10,100,1000", help="comma-separated tensor counts")
    parser.add_argument("--numel", type=int, default=4_000_000, help="total parameters (default 4 M)")
    parser.add_argument("--algorithm", default="AdamW")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.tensors.split(",")]
    rows = []
    print("| tensors | first fused step, cold cache (s) | warm cache (s) |\n|---:|---:|---:|")
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="ravine-inductor-") as cache:
            cold = measure(count, args.numel, args.algorithm, cache)
            warm = measure(count, args.numel, args.algorithm, cache)
        rows.append({"tensors": count, "cold_s": cold, "warm_s": warm})
        print(f"| {count} | {cold:.1f} | {warm:.1f} |", flush=True)
    print(json.dumps({"algorithm": args.algorithm, "numel": args.numel, "rows": rows}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Muon step benchmark: ravine's Muon against ``torch.optim.Muon`` on the same 2-D parameters.

The parameters are the 33 matrices of the step benchmark's transformer-shaped set (an 8192×512 embedding and
8 layers of 1536×512, 512×512, 2048×512 and 512×2048 at ``scale=1``). Candidates are timed in interleaved
rounds — one step of each per round, in turn — so that the machine's drift hits them alike, and the report
gives each one's median step time and the median over rounds of its time divided by torch's. Newton–Schulz is
matrix products: the report also gives its arithmetic rate against the same run's bf16 matrix-product rate.
Run ``ravine bench muon``; never use this in a timed test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import ravine
from ravine.bench.step import _median_ms, _sync, transformer_params
from ravine.files import atomic_folder, check_output_folder


def matrices(scale: float, device: str) -> list[torch.Tensor]:
    params = [p for p in transformer_params(scale, device) if p.ndim == 2]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def newton_schulz_flops(shapes: list[tuple[int, int]], steps: int = 5) -> float:
    """Floating-point operations of ``steps`` quintic iterations on each (m ≤ n after transposing) matrix."""
    total = 0.0
    for rows, cols in shapes:
        m, n = min(rows, cols), max(rows, cols)
        total += steps * 2 * (2 * m * m * n + m * m * m)  # X·Xᵀ, A·A, B·X (multiply-adds count 2)
    return total


def matmul_rate(device: str, repeats: int) -> float:
    """bf16 FLOP/s of a 2048×2048 by 2048×2048 product, median of ``repeats``."""
    a = torch.randn(2048, 2048, device=device, dtype=torch.bfloat16)
    a @ a
    return 2 * 2048**3 / (_median_ms(lambda: a @ a, device, repeats) * 1e-3)


def candidates() -> dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]]:
    table: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "torch.optim.Muon": lambda p: torch.optim.Muon(p, lr=0.02, adjust_lr_fn="original"),
        "ravine Muon per-tensor": lambda p: ravine.Muon(p, lr=0.02, foreach=False),
        "ravine Muon multi-tensor": lambda p: ravine.Muon(p, lr=0.02, foreach=True),
        "ravine MuonWithAuxAdam": lambda p: ravine.MuonWithAuxAdam([{"params": p, "use_muon": True}]),
    }
    try:
        import muon

        table["muon-optimizer SingleDeviceMuon"] = lambda p: muon.SingleDeviceMuon(p, lr=0.02)
    except ImportError:
        pass
    return table


def run(scale: float = 1.0, device: str = "cpu", rounds: int = 7,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    table = candidates()
    sets = {name: matrices(scale, device) for name in table}
    optimizers = {name: make(sets[name]) for name, make in table.items()}
    shapes = [tuple(p.shape) for p in next(iter(sets.values()))]
    for name, optimizer in optimizers.items():  # warm-up: state creation, first-call costs
        log(f"warm-up: {name}")
        optimizer.step()
    times: dict[str, list[float]] = {name: [] for name in table}
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for name, optimizer in optimizers.items():
            _sync(device)
            start = time.perf_counter()
            optimizer.step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    flops = newton_schulz_flops(shapes)
    rate = matmul_rate(device, rounds)
    baseline = times["torch.optim.Muon"]
    rows = []
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, baseline, strict=True)]
        rows.append({"implementation": name, "median_ms": statistics.median(ts) * 1e3,
                     "ratio_to_torch": statistics.median(ratios),
                     "ns_fraction_of_matmul": flops / statistics.median(ts) / rate})
    machine = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
               "threads": torch.get_num_threads(), "torch": torch.__version__, "matrices": len(shapes),
               "params": sum(r * c for r, c in shapes), "rounds": rounds, "bf16_matmul_tflops": rate / 1e12,
               "newton_schulz_gflop_per_step": flops / 1e9}
    return {"machine": machine, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{m['matrices']} matrices, {m['params'] / 1e6:.1f} M parameters on {m['device']} "
             f"({m['threads']} threads, torch {m['torch']}); {m['rounds']} interleaved rounds; "
             f"bf16 matmul {m['bf16_matmul_tflops']:.2f} TFLOP/s; Newton–Schulz "
             f"{m['newton_schulz_gflop_per_step']:.0f} GFLOP per step", "",
             "| implementation | median ms/step | median ratio to torch | Newton–Schulz rate / matmul rate |",
             "|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['implementation']} | {row['median_ms']:.1f} | {row['ratio_to_torch']:.2f}× | "
                     f"{row['ns_fraction_of_matmul']:.0%} |")
    return "\n".join(lines)


OUTPUTS = ("muon.md", "muon.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ravine bench muon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="parameter-set scale (1.0 = 29.4 M in 33 matrices)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", default="bench-muon", help="folder for muon.md and muon.json")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.rounds < 1:
        parser.error(f"--scale must be > 0 and --rounds >= 1 (got {args.scale}, {args.rounds})")
    try:
        check_output_folder(args.output, OUTPUTS)
    except ValueError as error:
        parser.error(str(error))
    result = run(args.scale, args.device, args.rounds)
    table = markdown(result)
    with atomic_folder(args.output, OUTPUTS) as folder:
        (folder / "muon.md").write_text(table + "\n")
        (folder / "muon.json").write_text(json.dumps(result, indent=2) + "\n")
    out = Path(args.output)
    print(table)
    print(f"\nwrote {out / 'muon.md'}, {out / 'muon.json'}", file=sys.stderr)
    return 0

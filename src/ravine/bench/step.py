"""The optimizer-step benchmark: milliseconds per step and GB/s against the bytes each algorithm must move.

The parameter set is shaped like an 8-layer, d=512 transformer with an 8192-row embedding (97 tensors,
29.4 M float32 parameters at ``scale=1``). Every candidate steps the same parameters with fixed gradients;
the median over repeated blocks of 5 steps after warm-up is reported (per step), next to the bandwidth of
``a.add_(b)`` measured in the same run. Run ``ravine bench step`` (or ``python benchmarks/step.py``); never
use this in a timed test.
"""

from __future__ import annotations

import gc
import inspect
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch

from ravine.extras import require
from ravine.files import atomic_folder, check_output_folder
from ravine.memory import state_bytes
from ravine.registry import ALGORITHMS, VARIANTS, match_names

# Bytes each algorithm must read and write per float32 parameter: param, grad and state, read once;
# param and state written once. Keys are the registry's variant names.
BYTES_PER_PARAM = {
    "Momentum": 20,
    "Adagrad": 20,
    "RMSprop": 20,
    "Adam": 28,
    "AdamW": 28,
    "Lion": 20,
    "ADOPT": 28,
    "Lookahead(AdamW)": 28,  # plus the sync's 16 bytes every k steps, added per candidate
    "Adadelta": 28,
    "Adamax": 28,
    "NAdam": 28,
    "RAdam": 28,
    "ASGD": 20,
    "Rprop": 28,
    "Cautious AdamW": 28,  # the mask and its per-tensor count are computed in the kernel: no extra traffic
    "AdEMAMix": 36,  # AdamW plus the slow EMA, read and written
    "Schedule-Free AdamW": 28,  # z and v instead of m and v
}
COPY_BYTES = 12  # a.add_(b): read a and b, write a


def transformer_params(scale: float = 1.0, device: str = "cpu", dtype: torch.dtype = torch.float32) -> list:
    """97 tensors shaped like an 8-layer transformer (d=512·scale, 8192·scale embedding rows)."""
    d = max(8, int(512 * scale))
    rows = max(8, int(8192 * scale))
    shapes: list[tuple[int, ...]] = [(rows, d)]
    layer = [(3 * d, d), (3 * d,), (d, d), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]  # attention, MLP
    layer += [(d,)] * 4  # two LayerNorms
    for _ in range(8):
        shapes += layer
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g).to(device=device, dtype=dtype).requires_grad_() for s in shapes]


def _torch_class(name: str) -> type[torch.optim.Optimizer] | None:
    """torch.optim's class for a variant, when torch ships the algorithm with the variant's options (not
    wrapped, no ravine-only modifier such as ``cautious``)."""
    variant = VARIANTS[name]
    cls = None if variant.lookahead else getattr(torch.optim, ALGORITHMS[variant.algorithm].__name__, None)
    if cls is None or not set(variant.options) <= set(inspect.signature(cls).parameters):
        return None
    return cls


def _torch_optim(name: str, **flags: Any) -> Callable[[list], torch.optim.Optimizer]:
    variant, cls = VARIANTS[name], _torch_class(name)
    return lambda p: cls(p, lr=variant.default_lr, **variant.options, **flags)


def _ravine(name: str, **flags: Any) -> Callable[[list], torch.optim.Optimizer]:
    variant = VARIANTS[name]
    return lambda p: variant.build(p, variant.default_lr, **flags)


def candidates(device: str) -> dict[str, dict[str, Callable[[list], torch.optim.Optimizer]]]:
    """Every implementation to time, by algorithm. Third-party ones appear only when installed."""
    table: dict[str, dict[str, Callable[[list], torch.optim.Optimizer]]] = {}
    for name in BYTES_PER_PARAM:
        row = {"ravine fused": _ravine(name, fused=True), "ravine default": _ravine(name)}
        if _torch_class(name) is not None:
            row["torch for-loop"] = _torch_optim(name, foreach=False)
            row["torch foreach"] = _torch_optim(name, foreach=True)
            if name in ("Momentum", "Adam", "AdamW") or (name == "Adagrad" and device == "cpu"):
                row["torch fused"] = _torch_optim(name, fused=True)
        table[name] = row
    try:
        import lion_pytorch

        table["Lion"]["lion-pytorch"] = lambda p: lion_pytorch.Lion(p, lr=1e-4)
    except ImportError:
        pass
    try:
        import adopt

        table["ADOPT"]["torch-adopt"] = lambda p: adopt.ADOPT(p, lr=1e-3)
        table["ADOPT"]["torch-adopt foreach"] = lambda p: adopt.ADOPT(p, lr=1e-3, foreach=True)
    except ImportError:
        pass
    try:
        import pytorch_optimizer as po

        table["Lion"]["pytorch-optimizer"] = lambda p: po.Lion(p, lr=1e-4)
        table["ADOPT"]["pytorch-optimizer"] = lambda p: po.ADOPT(p, lr=1e-3)
        table["Lookahead(AdamW)"]["pytorch-optimizer"] = lambda p: po.Lookahead(torch.optim.AdamW(p, lr=1e-3), k=5)
    except ImportError:
        pass
    return table


@dataclass
class Row:
    algorithm: str
    implementation: str
    ms: float
    gb_per_s: float
    fraction_of_copy: float
    state_bytes_per_param: float
    first_step_s: float


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


BLOCK = 5  # steps timed together: Lookahead (k=5) syncs once per block, so its cost is averaged over k


def _median_ms(fn: Callable[[], Any], device: str, repeats: int, block: int = 1) -> float:
    """Median over ``repeats`` blocks of ``block`` calls, in milliseconds per call."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(block):
            fn()
        _sync(device)
        times.append((time.perf_counter() - start) / block)
    return statistics.median(times) * 1e3


def copy_bandwidth(numel: int, device: str, repeats: int) -> float:
    """GB/s of ``a.add_(b)`` over ``numel`` float32 elements (the run's reference bandwidth)."""
    a, b = torch.randn(numel, device=device), torch.randn(numel, device=device)
    for _ in range(3):
        a.add_(b)
    ms = _median_ms(lambda: a.add_(b), device, repeats)
    return COPY_BYTES * numel / (ms * 1e-3) / 1e9


def time_candidate(make: Callable[[list], torch.optim.Optimizer], scale: float, device: str, repeats: int,
                   warmup: int = BLOCK) -> tuple[float, float, int, int]:
    """(median ms per step, first-step seconds, state bytes, parameter count)."""
    params = transformer_params(scale, device)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = make(params)
    start = time.perf_counter()
    optimizer.step()
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        optimizer.step()
    ms = _median_ms(optimizer.step, device, repeats, block=BLOCK)
    numel = sum(p.numel() for p in params)
    result = (ms, first, state_bytes(optimizer), numel)
    del optimizer, params
    gc.collect()
    return result


def run(scale: float = 1.0, device: str = "cpu", repeats: int = 20, algorithms: list[str] | None = None,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    numel = sum(p.numel() for p in transformer_params(scale, "meta"))
    table = candidates(device)
    names, unknown = match_names(algorithms, list(table)) if algorithms else (list(table), [])
    if unknown or not names:
        raise ValueError(f"Invalid algorithms: {unknown} (choose from {list(table)})")
    total = sum(len(table[n]) for n in names)
    copy = copy_bandwidth(numel, device, repeats)
    log(f"add_ bandwidth: {copy:.1f} GB/s over {numel / 1e6:.1f} M float32 elements")
    rows, done = [], 0
    for name in names:
        for implementation, make in table[name].items():
            done += 1
            log(f"[{done}/{total}] {name}: {implementation} ...")
            ms, first, state, count = time_candidate(make, scale, device, repeats)
            moved = BYTES_PER_PARAM[name] + (16 / 5 if name.startswith("Lookahead") else 0)
            gbs = moved * count / (ms * 1e-3) / 1e9
            rows.append(Row(name, implementation, ms, gbs, gbs / copy, state / count, first))
    machine = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "params": numel,
        "tensors": 97,
        "copy_gb_per_s": copy,
        "repeats": repeats,
    }
    return {"machine": machine, "rows": [asdict(r) for r in rows]}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['date']} · {m['device']} · {m['threads']} threads · torch {m['torch']} · "
        f"{m['params'] / 1e6:.1f} M params in {m['tensors']} tensors · add_ {m['copy_gb_per_s']:.1f} GB/s · "
        f"median of {m['repeats']} blocks of {BLOCK} steps",
        "",
        "| algorithm | implementation | ms/step | GB/s | % of add_ | state B/param | first step (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['algorithm']} | {r['implementation']} | {r['ms']:.1f} | {r['gb_per_s']:.1f} | "
            f"{100 * r['fraction_of_copy']:.0f}% | {r['state_bytes_per_param']:.0f} | {r['first_step_s']:.1f} |"
        )
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: Path) -> Path:
    from ravine.plotting import _pyplot, save_figure

    plt = _pyplot()
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.5))
    labels = [f"{r['algorithm']} · {r['implementation']}" for r in rows]
    colors = ["#1f6feb" if r["implementation"].startswith("ravine fused") else
              "#8cb4f5" if r["implementation"].startswith("ravine") else "#999999" for r in rows]
    ax.barh(range(len(rows)), [r["gb_per_s"] for r in rows], color=colors)
    ax.axvline(result["machine"]["copy_gb_per_s"], color="#d1242f", linestyle="--", label="add_ bandwidth")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GB/s (bytes the algorithm must move / time per step)")
    ax.legend(loc="lower right")
    machine = result["machine"]
    ax.set_title(f"optimizer step, {machine['params'] / 1e6:.1f} M params, {machine['device']}", fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


OUTPUTS = ("step.md", "step.json", "step.png")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ravine bench step", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="parameter-set scale (1.0 = 29.4 M params)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per candidate (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--algorithms", default=None, help=f"comma-separated subset of {list(BYTES_PER_PARAM)}")
    parser.add_argument("-o", "--output", default="bench-step", help="folder for step.md, step.json, step.png")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.repeats < 1:
        parser.error(f"--scale must be > 0 and --repeats >= 1 (got {args.scale}, {args.repeats})")
    algorithms = [a.strip() for a in args.algorithms.split(",")] if args.algorithms else None
    require("ravine bench step", "plot", "matplotlib")  # the bar chart: checked before the benchmark runs
    try:
        check_output_folder(args.output, OUTPUTS)
        result = run(args.scale, args.device, args.repeats, algorithms)
    except ValueError as error:
        parser.error(str(error))
    table = markdown(result)
    with atomic_folder(args.output, OUTPUTS) as folder:
        (folder / "step.md").write_text(table + "\n")
        (folder / "step.json").write_text(json.dumps(result, indent=2) + "\n")
        bar_chart(result, folder / "step.png")
    print(table)
    out = Path(args.output)
    print(f"\nwrote {out / 'step.md'}, {out / 'step.json'}, {out / 'step.png'}", file=sys.stderr)
    return 0

"""The optimizer-step benchmark: milliseconds per step, GB/s against the bytes each algorithm must move, and
ratios between candidates measured in interleaved rounds.

Two parameter sets (``--shape``): ``transformer`` (the default), shaped like an 8-layer, d=512 transformer with
an 8192-row embedding (97 tensors, 29.4 M float32 parameters at ``scale=1``), and ``small``, 2,000 tensors of
1 k–16 k elements (where per-tensor overhead, not bandwidth, decides). Every candidate of an algorithm steps its
own copy of the same parameters with fixed gradients. After warm-up the candidates run in rounds, one block of
5 steps each per round, in an order that rotates from round to round, so the drift of a shared machine hits
them alike. The report gives each candidate's median time per step and the median over rounds of its time
divided by a reference's in the same round (torch's fused step, torch's default step, and for a wrapper or a
modifier the bare inner step), next to the bandwidth of ``a.add_(b)`` measured in the same run. Run
``ravine bench step`` (or ``python benchmarks/step.py``); never use this in a timed test.
"""

from __future__ import annotations

import gc
import inspect
import math
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

from ravine.algorithms import AdamW
from ravine.bench import write_report
from ravine.extras import require
from ravine.files import check_output_folder
from ravine.memory import state_bytes
from ravine.registry import ALGORITHMS, VARIANTS, match_names
from ravine.weight_ema import WeightEMA

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
    "Lookahead(AdamW)": 28,  # plus the folded sync's 8 bytes (slow weights read and written) every k steps
    "Adadelta": 28,
    "Adamax": 28,
    "NAdam": 28,
    "RAdam": 28,
    "ASGD": 20,
    "Rprop": 28,
    # Two passes: the per-tensor count of kept coordinates must be known before any parameter is written, so
    # the gradient and moments are read once for it (12 bytes), then AdamW's 28.
    "Cautious AdamW": 40,
    "AdEMAMix": 36,  # AdamW plus the slow EMA, read and written
    "Schedule-Free AdamW": 28,  # z and v instead of m and v
    "WeightEMA(AdamW)": 36,  # AdamW plus the average, read and written
    "AdamW int8 state": 16,  # two 1-byte codes read and written (+ a float32 maximum per 256 elements)
    "AdamW bf16 state": 20,  # two 2-byte moments read and written
}
# Rows with a bare counterpart (their "× bare step" column): wrappers, modifiers and compact state against plain
# AdamW.
BARE_VARIANT = {"Lookahead(AdamW)": "AdamW", "WeightEMA(AdamW)": "AdamW", "AdamW int8 state": "AdamW",
                "AdamW bf16 state": "AdamW", "Cautious AdamW": "AdamW", "AdEMAMix": "AdamW"}
COMPACT = {"AdamW int8 state": "int8", "AdamW bf16 state": torch.bfloat16}  # state_dtype of each such row
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
    return _random(shapes, device, dtype)


def small_params(scale: float = 1.0, device: str = "cpu", dtype: torch.dtype = torch.float32) -> list:
    """2,000·scale tensors of 1,024 to 16,384 elements (log-uniform, seeded): a model of many small layers."""
    g = torch.Generator().manual_seed(1)
    count = max(2, int(2000 * scale))
    sizes = torch.exp(torch.empty(count).uniform_(0.0, 4.0 * math.log(2.0), generator=g)) * 1024
    return _random([(int(n),) for n in sizes], device, dtype)


def _random(shapes: list[tuple[int, ...]], device: str, dtype: torch.dtype) -> list:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g).to(device=device, dtype=dtype).requires_grad_() for s in shapes]


PARAMETER_SETS: dict[str, Callable[..., list]] = {"transformer": transformer_params, "small": small_params}


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


# The reference each ratio column divides by: torch's fused step, torch's default step, and for a wrapper
# (Lookahead, WeightEMA) the bare inner optimizer's fused step, for a modifier (cautious, AdEMAMix) the fused
# step without it, for compact state the float32-state step.
TORCH_FUSED, TORCH_DEFAULT, BARE = "torch fused", "torch default", "bare inner fused"
REFERENCES = (TORCH_FUSED, TORCH_DEFAULT, BARE)


def candidates(device: str) -> dict[str, dict[str, Callable[[list], torch.optim.Optimizer]]]:
    """Every implementation to time, by algorithm. Third-party ones appear only when installed."""
    table: dict[str, dict[str, Callable[[list], torch.optim.Optimizer]]] = {}
    for name in BYTES_PER_PARAM:
        if name == "WeightEMA(AdamW)":
            table[name] = {"ravine fused": lambda p: WeightEMA(AdamW(p, lr=1e-3, fused=True)),
                           "ravine default": lambda p: WeightEMA(AdamW(p, lr=1e-3)),
                           BARE: _ravine("AdamW", fused=True),
                           "torch fused + AveragedModel": _AveragedModelStep}
            continue
        if name in COMPACT:
            table[name] = {"ravine fused": _ravine("AdamW", fused=True, state_dtype=COMPACT[name]),
                           "ravine default": _ravine("AdamW", state_dtype=COMPACT[name]),
                           BARE: _ravine("AdamW", fused=True), TORCH_FUSED: _torch_optim("AdamW", fused=True)}
            continue
        row = {"ravine fused": _ravine(name, fused=True), "ravine default": _ravine(name)}
        if _torch_class(name) is not None:
            row["torch for-loop"] = _torch_optim(name, foreach=False)
            row["torch foreach"] = _torch_optim(name, foreach=True)
            if name in ("Momentum", "Adam", "AdamW") or (name == "Adagrad" and device == "cpu"):
                row[TORCH_FUSED] = _torch_optim(name, fused=True)
        if name in BARE_VARIANT:
            row[BARE] = _ravine(BARE_VARIANT[name], fused=True)
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


class _AveragedModelStep:
    """torch's way to the same EMA: fused AdamW, then ``AveragedModel.update_parameters`` after every step."""

    def __init__(self, params: list) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.model = torch.nn.ParameterList(params)
        self.optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
        self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
        self.averages = dict(zip(params, self.averaged.module.parameters(), strict=True))  # for state_bytes
        self.state = self.optimizer.state
        self.param_groups = self.optimizer.param_groups

    def step(self) -> None:
        self.optimizer.step()
        self.averaged.update_parameters(self.model)


def reference_of(row: dict[str, Any], column: str, device: str) -> str | None:
    """The candidate a ratio column divides by, if the algorithm has one."""
    name = {TORCH_DEFAULT: "torch foreach" if device.startswith("cuda") else "torch for-loop"}.get(column, column)
    return name if name in row else None


@dataclass
class Row:
    algorithm: str
    implementation: str
    ms: float
    gb_per_s: float
    fraction_of_copy: float
    state_bytes_per_param: float
    first_step_s: float
    ratios: dict[str, float]  # median over rounds of this candidate's time / the reference's, by column


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's as the platform reports it."""
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


BLOCK = 5  # steps timed together: Lookahead (k=5) syncs once per block, so its cost is averaged over k


def _median_ms(fn: Callable[[], Any], device: str, repeats: int, block: int = 1) -> float:
    """Median over ``repeats`` blocks of ``block`` calls, in milliseconds per call."""
    return statistics.median(_block_seconds(fn, device, block) for _ in range(repeats)) * 1e3


def _block_seconds(fn: Callable[[], Any], device: str, block: int) -> float:
    """Seconds per call of one block of ``block`` calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(block):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / block


def copy_bandwidth(numel: int, device: str, repeats: int) -> float:
    """GB/s of ``a.add_(b)`` over ``numel`` float32 elements (the run's reference bandwidth)."""
    a, b = torch.randn(numel, device=device), torch.randn(numel, device=device)
    for _ in range(3):
        a.add_(b)
    ms = _median_ms(lambda: a.add_(b), device, repeats)
    return COPY_BYTES * numel / (ms * 1e-3) / 1e9


def interleaved(makers: dict[str, Callable[[list], torch.optim.Optimizer]], make_params: Callable[[], list],
                device: str, rounds: int) -> dict[str, dict[str, Any]]:
    """Time every candidate in ``rounds`` rounds of one block each, the order rotating by one per round.

    Each candidate steps its own copy of the parameters (fixed gradients). Returns, per candidate, its
    seconds per step in each round (``times``), its first step's seconds, and its state bytes and parameter
    count.
    """
    runs: dict[str, dict[str, Any]] = {}
    for name, make in makers.items():
        params = make_params()
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = make(params)
        start = time.perf_counter()
        optimizer.step()
        _sync(device)
        first = time.perf_counter() - start
        for _ in range(BLOCK - 1):  # warm-up: lazy state, flat buffers, caches
            optimizer.step()
        runs[name] = {"optimizer": optimizer, "params": params, "first": first, "times": []}
    names = list(runs)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name]["times"].append(_block_seconds(runs[name]["optimizer"].step, device, BLOCK))
    for entry in runs.values():
        optimizer, params = entry.pop("optimizer"), entry.pop("params")
        entry["state"], entry["numel"] = state_bytes(optimizer), sum(p.numel() for p in params)
    gc.collect()
    return runs


def run(scale: float = 1.0, device: str = "cpu", rounds: int = 20, algorithms: list[str] | None = None,
        shape: str = "transformer",
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, Any]:
    make_params = PARAMETER_SETS[shape]
    meta = make_params(scale, "meta")
    numel = sum(p.numel() for p in meta)
    table = candidates(device)
    names, unknown = match_names(algorithms, list(table)) if algorithms else (list(table), [])
    if unknown or not names:
        raise ValueError(f"Invalid algorithms: {unknown} (choose from {list(table)})")
    copy = copy_bandwidth(numel, device, rounds)
    log(f"add_ bandwidth: {copy:.1f} GB/s over {numel / 1e6:.1f} M float32 elements in {len(meta)} tensors")
    rows = []
    for done, name in enumerate(names, 1):
        log(f"[{done}/{len(names)}] {name}: {', '.join(table[name])} ({rounds} interleaved rounds) ...")
        runs = interleaved(table[name], lambda: make_params(scale, device), device, rounds)
        for implementation, entry in runs.items():
            ms = statistics.median(entry["times"]) * 1e3
            timed = BARE_VARIANT[name] if implementation == BARE else name  # the bare row moves its own bytes
            moved = BYTES_PER_PARAM[timed] + (8 / 5 if timed.startswith("Lookahead") else 0)  # folded sync
            gbs = moved * entry["numel"] / (ms * 1e-3) / 1e9
            ratios = {}
            for column in REFERENCES:
                reference = reference_of(runs, column, device)
                if reference is not None:
                    pairs = zip(entry["times"], runs[reference]["times"], strict=True)
                    ratios[column] = statistics.median(t / ref for t, ref in pairs)
            rows.append(Row(name, implementation, ms, gbs, gbs / copy, entry["state"] / entry["numel"],
                            entry["first"], ratios))
    machine = {
        "date": date.today().isoformat(),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "shape": shape,
        "params": numel,
        "tensors": len(meta),
        "copy_gb_per_s": copy,
        "rounds": rounds,
    }
    return {"machine": machine, "rows": [asdict(r) for r in rows]}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['date']} · {m['device']} · {m['threads']} threads · torch {m['torch']} · {m['shape']} set: "
        f"{m['params'] / 1e6:.1f} M params in {m['tensors']} tensors · add_ {m['copy_gb_per_s']:.1f} GB/s · "
        f"{m['rounds']} interleaved rounds of {BLOCK} steps per candidate; ratios are medians of per-round ratios",
        "",
        "| algorithm | implementation | ms/step | GB/s | % of add_ | × torch fused | × torch default "
        "| × bare step | state B/param | first step (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ratios = " | ".join(f"{r['ratios'][c]:.2f}" if c in r["ratios"] else "" for c in REFERENCES)
        lines.append(
            f"| {r['algorithm']} | {r['implementation']} | {r['ms']:.1f} | {r['gb_per_s']:.1f} | "
            f"{100 * r['fraction_of_copy']:.0f}% | {ratios} | {r['state_bytes_per_param']:.2f} | "
            f"{r['first_step_s']:.1f} |"
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
    return save_figure(fig, path)


OUTPUTS = ("step.md", "step.json", "step.png")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ravine bench step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(PARAMETER_SETS), default="transformer",
                        help="parameter set: 'transformer' (97 tensors, 29.4 M params) or 'small' (2,000 tensors "
                             "of 1k-16k elements)")
    parser.add_argument("--scale", type=float, default=1.0, help="parameter-set scale (1.0 = the sizes above)")
    parser.add_argument("--rounds", type=int, default=20,
                        help="interleaved rounds of 5 steps per candidate (medians reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--algorithms", default=None, help=f"comma-separated subset of {list(BYTES_PER_PARAM)}")
    parser.add_argument("-o", "--output", default="bench-step", help="folder for step.md, step.json, step.png")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.rounds < 1:
        parser.error(f"--scale must be > 0 and --rounds >= 1 (got {args.scale}, {args.rounds})")
    algorithms = [a.strip() for a in args.algorithms.split(",")] if args.algorithms else None
    require("ravine bench step", "plot", "matplotlib")  # the bar chart: checked before the benchmark runs
    try:
        check_output_folder(args.output, OUTPUTS)
        result = run(args.scale, args.device, args.rounds, algorithms, args.shape)
    except ValueError as error:
        parser.error(str(error))
    write_report(args.output, "step", markdown(result), result, bar_chart)
    return 0

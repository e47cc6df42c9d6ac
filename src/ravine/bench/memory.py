"""Peak memory of training a transformer-shaped model with each memory-saving option, and its step time.

Every configuration runs in a fresh Python process. The process first runs one training step of a tiny model with
the same configuration (so compiling the fused step is not part of the measurement), then records its resident
memory as the idle baseline, resets the kernel's peak counter (``/proc/self/clear_refs``), builds the model and
trains it for ``--steps`` steps (glibc's mmap threshold is fixed at 128 KiB, so that freed tensors go back to the
system and resident memory follows the memory in use). The figure reported is the peak resident memory above that
baseline (on CUDA: ``torch.cuda.max_memory_allocated``).

Step times come from one more process, which builds every configuration and times one whole training step of
each per round (forward, backward and step: with step_in_backward the update happens inside backward), the order
rotating from round to round, with glibc's own allocator settings: the ratios to ravine's fused step are medians
of per-round ratios, as ``ravine bench step`` takes them (timing each configuration alone, one after another,
left the machine's drift in the ratios, and the fixed mmap threshold makes every large temporary a fresh
mapping). The model is a decoder-style stack
(``torch.nn.TransformerEncoder`` with a causal mask, d=768, 12 layers, 12 heads: ~98 M parameters at ``--scale
1``) on random tokens; only memory and time are measured here (``ravine compare`` measures quality).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

CONFIGS: dict[str, str] = {
    "torch AdamW": "torch.optim.AdamW, its default (for-loop) implementation on CPU",
    "ravine AdamW fused": "ravine.AdamW(fused=True)",
    "+ step in backward": "fused, step_in_backward=True",
    "+ int8 state": "fused, state_dtype='int8'",
    "+ step in backward + int8 state": "fused, step_in_backward=True, state_dtype='int8'",
    "+ bf16 Kahan parameters": "bfloat16 parameters, fused, kahan_sum=True",
    "+ all three": "bfloat16 parameters, fused, kahan_sum, step_in_backward, state_dtype='int8'",
}
OUTPUTS = ("memory.md", "memory.json", "memory.png")


def build_model(scale: float, device: str) -> Any:
    import torch
    from torch import nn

    width = max(16, int(768 * scale) // 16 * 16)
    layers = max(1, round(12 * scale))

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(8192, width)
            layer = nn.TransformerEncoderLayer(width, max(1, width // 64), 4 * width, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(width, 8192)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device)
            return self.head(self.blocks(self.embed(tokens), mask=mask, is_causal=True))

    return Decoder().to(device)


def _ravine_options(config: str) -> dict[str, Any]:
    """The ``ravine.AdamW`` options of a configuration other than torch AdamW."""
    everything = config == "+ all three"
    options: dict[str, Any] = {"fused": True}
    if everything or "step in backward" in config:
        options["step_in_backward"] = True
    if everything or "int8" in config:
        options["state_dtype"] = "int8"
    if everything or "bf16" in config:
        options["kahan_sum"] = True  # with bfloat16 parameters (see _prepare)
    return options


def _train_step(model: Any, optimizer: Any, tokens: Any) -> None:
    import torch

    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM, the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(config: str, scale: float, steps: int, device: str, batch: int, length: int) -> dict[str, Any]:
    """One configuration, measured in this (fresh) process; returns what the parent reports."""
    import gc

    import torch

    from ravine.memory import state_bytes

    warm = _prepare(config, 0.05, device, batch, length)  # compiles the fused step outside the measurement
    for _ in range(2):
        _train_step(*warm)
    del warm
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = _rss_bytes("VmRSS")
        exact_peak = _reset_peak()
    model, optimizer, tokens = _prepare(config, scale, device, batch, length)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _train_step(model, optimizer, tokens)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = _rss_bytes("VmHWM") - baseline if exact_peak else -1
    params = sum(p.numel() for p in model.parameters())
    return {"config": config, "peak_bytes": peak, "params": params,
            "state_bytes": state_bytes(optimizer), "step_ms": 1e3 * statistics.median(times[1:] or times),
            "steps": steps}


def _prepare(config: str, model_scale: float, device: str, batch: int, length: int) -> tuple[Any, Any, Any]:
    """The model (bfloat16 where Kahan summation is on), its optimizer and a batch of tokens."""
    import torch

    import ravine

    torch.manual_seed(0)
    model = build_model(model_scale, device)
    options = None if config == "torch AdamW" else _ravine_options(config)
    if options is not None and options.get("kahan_sum"):
        model = model.to(torch.bfloat16)
    tokens = torch.randint(0, 8192, (batch, length + 1), device=device)
    if options is None:
        return model, torch.optim.AdamW(model.parameters(), lr=1e-4), tokens
    return model, ravine.AdamW(model.parameters(), lr=1e-4, **options), tokens


def timing_child(configs: list[str], scale: float, device: str, batch: int, length: int,
                 rounds: int) -> dict[str, list[float]]:
    """Every configuration's training step timed in this one process, interleaved: after two warm-up steps
    each, ``rounds`` rounds of one step per configuration, the order rotating by one per round, so the drift
    of a shared machine hits them alike. Returns the seconds of each configuration's step in each round."""
    import torch

    built = {config: _prepare(config, scale, device, batch, length) for config in configs}
    for config in configs:
        for _ in range(2):
            _train_step(*built[config])
    times: dict[str, list[float]] = {config: [] for config in configs}
    for r in range(rounds):
        shift = r % len(configs)
        for config in configs[shift:] + configs[:shift]:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            _train_step(*built[config])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[config].append(time.perf_counter() - start)
    return times


def _python(code: str, env: dict[str, str], what: str) -> Any:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(configs: list[str], scale: float, device: str, batch: int, length: int,
                  rounds: int) -> dict[str, list[float]]:
    code = (f"import json; from ravine.bench.memory import timing_child; print(json.dumps(timing_child("
            f"{configs!r}, {scale!r}, {device!r}, {batch!r}, {length!r}, {rounds!r})))")
    # glibc's own mmap threshold here: the step times are those of a training process as users run it
    return _python(code, {**os.environ, "PYTHONWARNINGS": "ignore"}, "the interleaved timing")


def measure(config: str, scale: float, steps: int, device: str, batch: int, length: int) -> dict[str, Any]:
    code = (f"import json; from ravine.bench.memory import child; "
            f"print(json.dumps(child({config!r}, {scale!r}, {steps!r}, {device!r}, {batch!r}, {length!r})))")
    # glibc keeps freed mid-sized blocks (its mmap threshold grows as large blocks are freed), so resident
    # memory would keep every temporary ever made; a fixed threshold returns freed tensors to the system and
    # the resident peak follows the memory actually in use.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "131072"}
    return _python(code, env, f"configuration {config!r}")


def run(scale: float, steps: int, device: str, batch: int, length: int, configs: list[str],
        rounds: int = 5) -> dict[str, Any]:
    import torch

    from ravine.progress import Progress

    rows = []
    with Progress(len(configs) + 1, "measuring") as bar:
        for config in configs:
            bar.update(config)
            rows.append(measure(config, scale, steps, device, batch, length))
        bar.update(f"step times, {rounds} interleaved rounds")
        times = measure_times(configs, scale, device, batch, length, rounds)
    reference = next((r for r in rows if r["config"] == "torch AdamW"), None)
    fused = times.get("ravine AdamW fused")
    for r in rows:
        measured = reference is not None and r["peak_bytes"] > 0
        r["peak_vs_torch"] = r["peak_bytes"] / reference["peak_bytes"] if measured else None
        r["step_ms_alone"] = r.pop("step_ms")  # in its own process, under the fixed mmap threshold
        own = times[r["config"]]
        r["step_ms"] = 1e3 * statistics.median(own)
        r["step_times"] = own
        r["time_vs_fused"] = statistics.median(a / b for a, b in zip(own, fused, strict=True)) if fused else None
    machine = {"date": date.today().isoformat(), "device": device, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "scale": scale, "batch": batch, "length": length,
               "params": rows[0]["params"] if rows else 0, "rounds": rounds}
    return {"machine": machine, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['date']} · {m['device']} · {m['threads']} threads · torch {m['torch']} · decoder of "
        f"{m['params'] / 1e6:.1f} M parameters · batch {m['batch']} × {m['length']} tokens · each configuration "
        "in a fresh process; peak resident memory above the idle baseline; training-step time: median of "
        f"{m.get('rounds', '?')} interleaved rounds in one process, the ratio a median of per-round ratios",
        "",
        "| configuration | peak above baseline (MB) | × torch AdamW | optimizer state (B/param) | step (ms) "
        "| × ravine fused step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        peak = f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] > 0 else "n/a"
        vs_torch = f"{r['peak_vs_torch']:.2f}" if r["peak_vs_torch"] is not None else ""
        vs_fused = f"{r['time_vs_fused']:.2f}" if r["time_vs_fused"] is not None else ""
        lines.append(f"| {r['config']} | {peak} | {vs_torch} | {r['state_bytes'] / r['params']:.2f} | "
                     f"{r['step_ms']:.0f} | {vs_fused} |")
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: Path) -> Path:
    from ravine.plotting import _pyplot, save_figure

    plt = _pyplot()
    rows = [r for r in result["rows"] if r["peak_bytes"] > 0]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.5))
    colors = ["#999999" if r["config"].startswith("torch") else "#1f6feb" for r in rows]
    ax.barh(range(len(rows)), [r["peak_bytes"] / 2**20 for r in rows], color=colors)
    for i, r in enumerate(rows):
        ax.text(r["peak_bytes"] / 2**20, i, f"  {r['step_ms']:.0f} ms/step", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["config"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peak resident memory above the idle process (MB)")
    m = result["machine"]
    ax.set_title(f"training a {m['params'] / 1e6:.0f} M-parameter decoder, {m['device']}", fontsize=9)
    ax.margins(x=0.2)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ravine.bench import write_report
    from ravine.extras import require
    from ravine.files import check_output_folder

    parser = argparse.ArgumentParser(prog="ravine bench memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="model scale (1.0: d=768, 12 layers, ~98 M)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per configuration (median of "
                        "all but the first is reported)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the step-time phase")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default=None, help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("-o", "--output", default="bench-memory", help="folder for memory.md, .json, .png")
    args = parser.parse_args(argv)
    for name in ("scale", "steps", "batch", "length", "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0 (got {getattr(args, name)})")
    configs = list(CONFIGS) if args.configs is None else [c.strip() for c in args.configs.split(",")]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {unknown[0]!r}; choose from: {', '.join(CONFIGS)}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda[:N] (got {args.device!r})")
    require("ravine bench memory", "plot", "matplotlib")
    try:
        check_output_folder(args.output, OUTPUTS)
    except ValueError as error:
        parser.error(str(error))
    try:
        result = run(args.scale, args.steps, args.device, args.batch, args.length, configs, args.rounds)
    except RuntimeError as error:
        print(f"ravine bench memory: {error}", file=sys.stderr)
        return 1
    write_report(args.output, "memory", markdown(result), result, bar_chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())

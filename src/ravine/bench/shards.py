"""The sharded-step benchmark: ``fused=True`` on FSDP2 shards against the same fused step on plain tensors.

Launches ``--ranks`` processes (gloo on CPU, NCCL on ``--device cuda``) with ``torch.distributed.run``. Each
rank builds the step benchmark's transformer-shaped set as a model of nine ``fully_shard`` groups (the
embedding, then eight layers of 12 tensors), runs one real forward and backward so that its gradients are the
ones FSDP2 hands out (views of each group's reduce-scatter output), and keeps them fixed. The candidates:

* ``plain fused`` — the reference: ravine's fused step on plain tensors of this rank's shard shapes;
* ``packed fused`` — FSDP2 after :func:`ravine.pack_shards` (one kernel call per group);
* ``unpacked fused`` — FSDP2 as ``fully_shard`` leaves it (one kernel call per tensor);
* ``per-tensor`` — FSDP2 with ``foreach=False``: DTensor's per-operator path, which ``fused=True`` took before;
* ``torch fused`` / ``torch default`` — torch.optim's class on the same FSDP2 shards, where torch has it.

After warm-up, the candidates run in rounds, one block of 5 steps each per round, in an order that rotates
from round to round, every block started together on all ranks; a block's time is the slowest rank's. The
report gives each candidate's median time per step and the median over rounds of its time divided by
``plain fused``'s in the same round. Run ``ravine bench shards``; never use this in a timed test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from ravine.bench.step import _sync, device_name

BLOCK = 5  # steps timed together
# ravine class name -> options; torch.optim ships the same class for each (its fused step where it has one)
ALGORITHMS = {"AdamW": {"lr": 1e-3}, "SGD": {"lr": 1e-3, "momentum": 0.9}, "Adam": {"lr": 1e-3},
              "Adagrad": {"lr": 1e-3}, "RMSprop": {"lr": 1e-3}, "Lion": {"lr": 1e-4}}
REFERENCE = "plain fused"
OUTPUTS = ("shards.md", "shards.json")
LABELS = (REFERENCE, "packed fused", "unpacked fused", "per-tensor", "torch fused", "torch default")


def _model(scale: float) -> torch.nn.Module:
    from ravine.bench.step import transformer_params

    shapes = [tuple(p.shape) for p in transformer_params(scale)]

    class Group(torch.nn.Module):
        def __init__(self, shapes: list[tuple[int, ...]]) -> None:
            super().__init__()
            self.tensors = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(s) * 0.02) for s in shapes])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum((p * x).sum() for p in self.tensors)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = Group(shapes[:1])
            self.layers = torch.nn.ModuleList(Group(shapes[1 + 12 * i: 13 + 12 * i]) for i in range(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embedding(x) + sum(layer(x) for layer in self.layers)

    return Model()


def _sharded(scale: float, device: str, pack: bool) -> list[torch.Tensor]:
    """The parameters of the model after fully_shard (and pack_shards), with the gradients of one backward."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    import ravine

    torch.manual_seed(0)
    model = _model(scale).to(device)
    for layer in model.layers:
        fully_shard(layer)
    fully_shard(model)
    if pack:
        ravine.pack_shards(model)
    model(torch.tensor(1e-3 * (1 + dist.get_rank()), device=device)).backward()
    return list(model.parameters())


def _candidates(name: str, device: str) -> dict[str, Any]:
    import ravine

    ours, options = getattr(ravine, name), ALGORITHMS[name]
    table = {
        REFERENCE: ("plain", lambda p: ours(p, fused=True, **options)),
        "packed fused": ("packed", lambda p: ours(p, fused=True, **options)),
        "unpacked fused": ("unpacked", lambda p: ours(p, fused=True, **options)),
        "per-tensor": ("unpacked", lambda p: ours(p, foreach=False, **options)),
    }
    theirs = getattr(torch.optim, name, None)
    if theirs is not None:
        if name in ("AdamW", "Adam", "SGD", "Adagrad"):
            table["torch fused"] = ("unpacked", lambda p: theirs(p, fused=True, **options))
        table["torch default"] = ("unpacked", lambda p: theirs(p, **options))
    return table


def worker(scale: float, device: str, rounds: int, algorithms: list[str], out: Path) -> None:
    """One rank's part (under torch.distributed.run); rank 0 writes the result to ``out``."""
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
        torch.cuda.set_device(device)

    rows = []
    try:
        for name in algorithms:
            rows.append(_measure(name, scale, device, rounds))
    finally:
        if rank == 0 and rows:
            out.write_text(json.dumps({"rows": rows, "world": world}))
        # FSDP2 modules and their DTensors released while the process group lives: collected after it is
        # destroyed, at exit, gloo aborted the process now and then
        gc.collect()
        dist.destroy_process_group()


def _measure(name: str, scale: float, device: str, rounds: int) -> dict[str, Any]:
    """One algorithm's row: every candidate timed in interleaved rounds (see the module docstring)."""
    import torch.distributed as dist

    sets: dict[str, list[torch.Tensor]] = {"packed": _sharded(scale, device, True)}
    plain = [p.to_local().detach().clone().requires_grad_() for p in sets["packed"]]
    for p, q in zip(plain, sets["packed"], strict=True):
        p.grad = q.grad.to_local().clone()
    sets["plain"] = plain
    runs: dict[str, dict[str, Any]] = {}
    unsupported: dict[str, str] = {}
    for label, (kind, make) in _candidates(name, device).items():
        # every candidate on FSDP2 without packing gets a model of its own
        optimizer = make(_sharded(scale, device, False) if kind == "unpacked" else sets[kind])
        try:
            for _ in range(BLOCK):  # warm-up: state, buffers, compilation
                optimizer.step()
        except NotImplementedError as error:  # torch's fused SGD has no DTensor sharding strategy
            unsupported[label] = str(error).splitlines()[0]
            continue
        _sync(device)
        runs[label] = {"step": optimizer.step, "times": []}
    labels = list(runs)
    for r in range(rounds):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            dist.barrier()
            _sync(device)
            start = time.perf_counter()
            for _ in range(BLOCK):
                runs[label]["step"]()
            _sync(device)
            seconds = torch.tensor((time.perf_counter() - start) / BLOCK, dtype=torch.float64, device=device)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank's block
            runs[label]["times"].append(seconds.item())
    reference = runs[REFERENCE]["times"]
    return {
        "algorithm": name,
        "ms": {label: statistics.median(run["times"]) * 1e3 for label, run in runs.items()},
        "ratio": {label: statistics.median(t / ref for t, ref in zip(run["times"], reference, strict=True))
                  for label, run in runs.items()},
        "shard_numel": sum(p.numel() for p in plain),
        "unsupported": unsupported,
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    seen = {label for row in result["rows"] for label in (*row["ratio"], *row["unsupported"])}
    labels = [label for label in LABELS if label in seen]
    lines = [
        f"{m['date']} · {m['device']} · {result['world']} ranks × {m['threads']} threads · torch {m['torch']} · "
        f"transformer set at scale {result['scale']} ({result['rows'][0]['shard_numel'] / 1e6:.3g} M parameters "
        f"per rank) · {result['rounds']} rounds",
        "",
        "Median step time in ms, then (×) the median of per-round ratios to the fused step on plain tensors of "
        "the shard shapes.",
        "",
        "| algorithm | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    notes = []
    for row in result["rows"]:
        cells = [f"{row['ms'][k]:.2f} ({row['ratio'][k]:.2f}×)" if k in row["ms"] else "—" for k in labels]
        lines.append(f"| {row['algorithm']} | " + " | ".join(cells) + " |")
        notes += [f"{row['algorithm']}, {label}: {why}" for label, why in row["unsupported"].items()]
    if notes:
        lines += ["", "Not run on FSDP2 shards:", *(f"- {note}" for note in notes)]
    return "\n".join(lines)


def run(scale: float = 1.0, device: str = "cpu", rounds: int = 12, algorithms: list[str] | None = None,
        ranks: int = 2) -> dict[str, Any]:
    """Launch the ranks and return the result (see the module docstring)."""
    algorithms = algorithms or ["AdamW", "SGD"]
    threads = max(1, (os.cpu_count() or 1) // ranks)
    with tempfile.TemporaryDirectory(prefix="ravine-bench-shards-") as folder:
        out = Path(folder) / "result.json"
        code = ("import sys; from pathlib import Path; from ravine.bench.shards import worker; "
                f"worker({scale!r}, {device!r}, {rounds!r}, {algorithms!r}, Path(sys.argv[1]))")
        script = Path(folder) / "worker.py"
        script.write_text(code + "\n")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                   str(script), str(out)]
        # The launcher and its ranks in a session of their own, stopped together on Ctrl-C (a signal that reached
        # only the launcher would leave the ranks running).
        launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        try:
            _, stderr = launcher.communicate()
        except BaseException:
            os.killpg(launcher.pid, signal.SIGTERM)
            launcher.wait()
            raise
        if launcher.returncode != 0 or not out.exists():
            raise RuntimeError(f"the benchmark's ranks failed (exit {launcher.returncode}):\n{stderr[-4000:]}")
        result = json.loads(out.read_text())
    result.update(scale=scale, rounds=rounds, machine={
        "date": date.today().isoformat(), "device": device_name(device), "threads": threads,
        "torch": torch.__version__})
    return result


def main(argv: list[str] | None = None) -> int:
    from ravine.files import atomic_folder, check_output_folder

    parser = argparse.ArgumentParser(prog="ravine bench shards", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the transformer set (1 = 29.4 M parameters in all; default 1)")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    parser.add_argument("--ranks", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--algorithms", default="AdamW,SGD",
                        help=f"comma-separated, from {', '.join(ALGORITHMS)} (default AdamW,SGD)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    parser.add_argument("-o", "--output", help="also write shards.md and shards.json into this folder")
    args = parser.parse_args(argv)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown or not algorithms:
        parser.error(f"--algorithms: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                     f"choose from {', '.join(ALGORITHMS)}")
    for flag, value in (("--rounds", args.rounds), ("--ranks", args.ranks)):
        if value < 1:
            parser.error(f"{flag} must be a positive integer, got {value}")
    if args.scale <= 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and torch.cuda.device_count() < args.ranks:
        parser.error(f"--device cuda needs {args.ranks} GPUs (one per rank); {torch.cuda.device_count()} found")
    if args.output:
        check_output_folder(args.output, OUTPUTS)
    try:
        result = run(args.scale, args.device, args.rounds, algorithms, args.ranks)
    except KeyboardInterrupt:
        print("ravine bench shards: interrupted; nothing written", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"ravine bench shards: {error}", file=sys.stderr)
        return 1
    table = markdown(result)
    print(table)
    if args.output:
        with atomic_folder(args.output, OUTPUTS) as folder:
            (folder / "shards.md").write_text(table + "\n")
            (folder / "shards.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {Path(args.output) / 'shards.md'} and shards.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

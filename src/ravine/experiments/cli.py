"""``ravine compare``: rerun the claims (or the lr sweep) with progress bars, and write the report."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ravine.extras import require
from ravine.files import atomic_folder, check_output_folder

DEFAULT_SEEDS = 5
REPORT_OUTPUTS = ("report.md", "runs.json", "runs.csv", "*.png")
TUNE_OUTPUTS = ("tuned.json",)
QUICK_SEEDS = 3


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "compare", help="rerun common claims about optimizers on real data and report which hold",
        description="Rerun common empirical claims about optimizers (digits MLP, character GPT on Python's "
                    "standard library) over several seeds, and write report.md, figures, runs.json and runs.csv.")
    parser.add_argument("claims", nargs="*", metavar="CLAIM",
                        help="claims to run, by number or key (see --list); default: all")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds 0..N-1 per arm (default {DEFAULT_SEEDS}, {QUICK_SEEDS} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a small step budget for smoke tests (about a minute; verdicts not meaningful)")
    parser.add_argument("-o", "--output", default=None,
                        help="output folder, replaced whole when the run completes (default ./compare; "
                             "./compare-tune with --tune)")
    parser.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--tune", action="store_true",
                        help="rerun the learning-rate sweep, write OUTPUT/tuned.json, then exit")
    parser.add_argument("--tuned", default=None, metavar="FILE",
                        help="the sweep results to read (a tuned.json from --tune); default: the package's copy")


def _check_args(args: argparse.Namespace) -> tuple[list[Any], torch.device]:
    from ravine.experiments.claims import select

    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else DEFAULT_SEEDS
    if args.seeds < 1:
        raise ValueError(f"Invalid seeds: {args.seeds} (seeds must be a positive integer)")
    claims = select(args.claims)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"Invalid device: {args.device!r} (a torch device such as cpu or cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid device: {args.device!r} (CUDA is not available on this machine)")
    return claims, device


def run_compare(args: argparse.Namespace) -> int:
    from ravine.experiments.claims import CLAIMS

    if args.list:
        for claim in CLAIMS.values():
            print(f"{claim.number:>2}  {claim.key:30} {claim.statement}")
        return 0
    try:
        claims, device = _check_args(args)
        if args.tune and args.tuned:
            raise ValueError("Invalid tuned: --tune writes OUTPUT/tuned.json; --tuned names a file to read")
        args.output = args.output or ("compare-tune" if args.tune else "compare")
        check_output_folder(args.output, TUNE_OUTPUTS if args.tune else REPORT_OUTPUTS)
    except ValueError as error:
        print(f"ravine compare: {error}", file=sys.stderr)
        return 2
    require("ravine compare", "compare", "sklearn", "scipy", "matplotlib", "rich")
    if args.tune:
        return _tune(args)
    from rich.console import Console

    from ravine.experiments.report import write_outputs
    from ravine.experiments.runner import run_claims
    from ravine.experiments.tuning import load_tuned

    try:
        tuned = load_tuned(Path(args.tuned) if args.tuned else None)
    except FileNotFoundError as error:
        print(f"ravine compare: {error}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    started = time.monotonic()
    seeds = list(range(args.seeds))
    with RichListener(console) as listener:
        outcomes = run_claims(claims, tuned, seeds, args.quick, device, listener)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1), "command": " ".join(sys.argv)}
    out = Path(args.output)
    with atomic_folder(out, REPORT_OUTPUTS) as folder:
        write_outputs(outcomes, folder, seeds, args.quick, str(device), meta)
    width = max(len(o.claim.key) for o in outcomes)
    for o in outcomes:
        print(f"{o.claim.number:>2}  {o.claim.key:{width}}  {o.verdict}")
    print(f"\nwrote {out}/report.md, runs.json, runs.csv and {len(outcomes)} figures "
          f"({meta['seconds']:.0f} s)", file=sys.stderr)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from ravine.experiments.tuning import TUNABLES, tune, write_tuned

    console = Console(stderr=True)
    with Progress(*Progress.get_default_columns(), console=console) as progress:
        sweeps = progress.add_task("sweeps", total=len(TUNABLES))
        trial = progress.add_task("trial", total=None)
        current = {"key": ""}

        def on_run(text: str) -> None:
            key = text.split(":")[0]
            if key != current["key"]:
                if current["key"]:
                    progress.advance(sweeps)
                current["key"] = key
            progress.update(trial, description=text)

        entries = tune(on_run=on_run)
        progress.update(sweeps, completed=len(TUNABLES))
    with atomic_folder(args.output, TUNE_OUTPUTS) as folder:
        write_tuned(entries, folder / "tuned.json")
    path = Path(args.output) / "tuned.json"
    for key, entry in entries.items():
        extra = ", ".join(f"{k} {v:.3g}" for k, v in entry.items() if k not in ("sweep", "lr"))
        print(f"{key:34} lr {entry['lr']:.3g}" + (f", {extra}" if extra else ""))
    print(f"wrote {path}; compare with it: ravine compare --tuned {path}", file=sys.stderr)
    return 0


class RichListener:
    """Five bars: everything (with the ETA), the experiment, the optimizer (arm), the seed and the step."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(TextColumn("{task.description:<12}"), BarColumn(bar_width=30),
                                 TextColumn("{task.fields[count]:>9}"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[what]}"),
                                 console=console)
        add = self.progress.add_task
        self.total = add("all", total=1.0, count="", what="")
        self.experiment = add("experiment", total=1, count="", what="")
        self.optimizer = add("optimizer", total=1, count="", what="")
        self.seed_bar = add("seed", total=1, count="", what="")
        self.step_bar = add("step", total=1, count="", what="")

    def __enter__(self) -> RichListener:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _log(self, text: str) -> None:
        if not self.console.is_terminal:  # no live bars in a log: one line per piece of work instead
            self.console.print(text, highlight=False, soft_wrap=True)

    def planned(self, total_cost: float) -> None:
        self.progress.update(self.total, total=max(total_cost, 1.0), count="")

    def claim(self, index: int, total: int, claim: Any) -> None:
        self.progress.update(self.experiment, total=total, completed=index, count=f"{index + 1}/{total}",
                             what=f"{claim.number}. {claim.key}")
        self._log(f"[{index + 1}/{total}] claim {claim.number}: {claim.statement}")

    def arm(self, index: int, total: int, arm: Any) -> None:
        self.progress.update(self.optimizer, total=total, completed=index, count=f"{index + 1}/{total}",
                             what=arm.label)
        self._log(f"  {arm.label}: {arm.describe()}")

    def seed(self, index: int, total: int, seed: int, steps: int) -> None:
        self.progress.update(self.seed_bar, total=total, completed=index, count=f"{index + 1}/{total}",
                             what=f"seed {seed}")
        self.progress.reset(self.step_bar, total=steps, count=f"0/{steps}", what="")
        self.steps = steps

    def step(self, done: int, cost: float) -> None:
        self.progress.update(self.step_bar, completed=done, count=f"{done}/{self.steps}")
        self.progress.advance(self.total, cost)
        task = self.progress.tasks[self.total]
        self.progress.update(self.total, count=f"{100 * task.completed / task.total:.0f}%")

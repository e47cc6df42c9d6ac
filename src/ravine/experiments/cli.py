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
STUDY_OUTPUTS = ("report.md", "timing.md", "trials.csv", "runs.json", "runs.csv", "*.png")
STUDY_WORKLOADS = ("digits", "digits-cnn")
# with a GPU the default study adds the character GPT at four widths: does an advantage grow or shrink with width?
ACCELERATOR_WORKLOADS = (*STUDY_WORKLOADS, "gpt", "gpt-128", "gpt-256", "gpt-512")
STUDY_TRIALS, QUICK_TRIALS = 16, 4


def add_parser(commands: Any) -> None:
    from ravine.experiments.tasks import TASKS

    parser = commands.add_parser(
        "compare", help="rerun common claims about optimizers on real data and report which hold",
        description="Rerun common empirical claims about optimizers (digits MLP, character GPT on Python's "
                    "standard library) over several seeds, and write report.md, figures, runs.json and runs.csv. "
                    "With --study (or --task), tune several optimizers with equal quasi-random budgets on each "
                    "workload instead, and report budget curves, time to target and performance profiles.")
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
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="runs made at once, each in its own process on one CPU thread (default: one per "
                             "CPU core on cpu, 1 on an accelerator); the results do not depend on it")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--tune", action="store_true",
                        help="rerun the learning-rate sweep, write OUTPUT/tuned.json, then exit")
    parser.add_argument("--tuned", default=None, metavar="FILE",
                        help="the sweep results to read (a tuned.json from --tune); default: the package's copy")
    study = parser.add_argument_group("tuning study (--study, --task)")
    study.add_argument("--study", action="store_true",
                       help="tune each optimizer with the same number of quasi-random trials on each workload and "
                            "write a study report (default output ./compare-study)")
    study.add_argument("--task", action="append", default=[], metavar="MODULE:FUNCTION",
                       help="your own workload: a function returning a task (see docs/experiments.md); "
                            "repeatable; implies --study")
    study.add_argument("--workloads", default=None, metavar="NAMES",
                       help=f"built-in workloads, comma-separated, from {', '.join(TASKS)} (default "
                            f"{','.join(STUDY_WORKLOADS)} on cpu, {','.join(ACCELERATOR_WORKLOADS)} on a GPU; "
                            "none when --task is given)")
    study.add_argument("--optimizers", default=None, metavar="NAMES",
                       help="optimizers to tune, comma-separated (default: AdamW, SGD + momentum, Lion, "
                            "Schedule-Free AdamW, Muon + AdamW)")
    study.add_argument("--trials", type=int, default=None,
                       help=f"trials per optimizer and workload (default {STUDY_TRIALS}, {QUICK_TRIALS} with "
                            "--quick)")
    study.add_argument("--search", choices=("full", "lr"), default="full",
                       help="search every hyperparameter of each space (default) or the learning rate only")


def _check_args(args: argparse.Namespace) -> tuple[list[Any], torch.device]:
    from ravine.experiments.claims import select
    from ravine.experiments.parallel import check_jobs, default_jobs

    if args.seeds is None:
        args.seeds = QUICK_SEEDS if args.quick else DEFAULT_SEEDS
    if args.seeds < 1:
        raise ValueError(f"Invalid seeds: {args.seeds} (seeds must be a positive integer)")
    claims = [] if args.study else select(args.claims)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"Invalid device: {args.device!r} (a torch device such as cpu or cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid device: {args.device!r} (CUDA is not available on this machine)")
    if args.jobs is not None and args.study:
        raise ValueError("Invalid jobs: the tuning study makes one run at a time (--jobs is for the claims and "
                         "--tune)")
    args.jobs = check_jobs(args.jobs) if args.jobs is not None else default_jobs(device)
    return claims, device


def run_compare(args: argparse.Namespace) -> int:
    from ravine.experiments.claims import CLAIMS

    if args.list:
        for claim in CLAIMS.values():
            print(f"{claim.number:>2}  {claim.key:30} {claim.statement}")
        return 0
    args.study = args.study or bool(args.task)
    study_only = [name for name, value in (("--workloads", args.workloads), ("--optimizers", args.optimizers),
                                           ("--trials", args.trials)) if value is not None]
    try:
        if args.study and (args.claims or args.tune or args.tuned):
            raise ValueError("Invalid study: --study/--task tune their own optimizers; claims, --tune and --tuned "
                             "belong to the claims report")
        if study_only and not args.study:
            raise ValueError(f"Invalid {study_only[0]}: it belongs to the tuning study (add --study)")
        claims, device = _check_args(args)
        if args.study:
            plan = _study_plan(args, device)
            args.output = args.output or "compare-study"
            check_output_folder(args.output, STUDY_OUTPUTS)
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
    if args.study:
        return _study(args, plan, device)
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
        outcomes = run_claims(claims, tuned, seeds, args.quick, device, listener, args.jobs)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1), "command": " ".join(sys.argv), "jobs": args.jobs}
    out = Path(args.output)
    with atomic_folder(out, REPORT_OUTPUTS) as folder:
        write_outputs(outcomes, folder, seeds, args.quick, str(device), meta)
    width = max(len(o.claim.key) for o in outcomes)
    for o in outcomes:
        print(f"{o.claim.number:>2}  {o.claim.key:{width}}  {o.verdict}")
    print(f"\nwrote {out}/report.md, runs.json, runs.csv and {len(outcomes)} figures "
          f"({meta['seconds']:.0f} s)", file=sys.stderr)
    return 0


def default_workloads(device: torch.device) -> tuple[str, ...]:
    """The study's built-in workloads when none are named: the GPT widths too on an accelerator."""
    return STUDY_WORKLOADS if device.type == "cpu" else ACCELERATOR_WORKLOADS


def _study_plan(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The study's workloads ``(task, steps, eval_every)``, search spaces and trial count, checked up front."""
    from ravine.experiments import search, user_task
    from ravine.experiments.tasks import TASKS

    if args.trials is None:
        args.trials = QUICK_TRIALS if args.quick else STUDY_TRIALS
    if args.trials < 1:
        raise ValueError(f"Invalid trials: {args.trials} (trials must be a positive integer)")
    names = _split(args.workloads) if args.workloads is not None else (
        [] if args.task else list(default_workloads(device)))
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise ValueError(f"Invalid workloads: {unknown[0]!r} (choose from {', '.join(TASKS)})")
    tasks: list[Any] = [TASKS[name] for name in names] + [user_task.load(spec) for spec in args.task]
    if not tasks:
        raise ValueError("Invalid workloads: none chosen (name built-in workloads or give --task)")
    seen = [t.name for t in tasks]
    duplicate = next((name for name in seen if seen.count(name) > 1), None)
    if duplicate is not None:
        raise ValueError(f"Invalid task: two workloads are named {duplicate!r} (a task's name must be unique)")
    spaces = search.select(_split(args.optimizers) if args.optimizers is not None else None)
    if args.search == "lr":
        spaces = [search.lr_only(space) for space in spaces]
    workloads = [(t, t.quick_steps, t.quick_eval_every) if args.quick else (t, t.steps, t.eval_every)
                 for t in tasks]
    return {"workloads": workloads, "spaces": spaces}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _study(args: argparse.Namespace, plan: dict[str, Any], device: torch.device) -> int:
    from rich.console import Console

    from ravine.experiments.study import estimate_seconds, run_study
    from ravine.experiments.study_report import format_profile, write_outputs

    console = Console(stderr=True)
    started = time.monotonic()
    seeds = list(range(args.seeds))
    for task, steps, _ in plan["workloads"]:
        seconds = estimate_seconds(task, steps, plan["spaces"], args.trials, len(seeds), device)
        console.print(f"{task.name}: {task.description}; {steps} steps, target validation loss {task.target:g}; "
                      f"about {_duration(seconds)} ({len(plan['spaces'])} optimizers × ({args.trials} trials + "
                      f"{len(seeds)} seeds × 3 stopping points))", highlight=False, soft_wrap=True)
    with RichListener(console) as listener:
        study = run_study(plan["workloads"], plan["spaces"], args.trials, seeds, args.search, args.quick, device,
                          listener)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1), "command": " ".join(["ravine", *sys.argv[1:]])}
    out = Path(args.output)
    with atomic_folder(out, STUDY_OUTPUTS) as folder:
        write_outputs(study, folder, str(device), meta)
    print(format_profile(study))
    print(f"\nwrote {out}/report.md, timing.md, trials.csv, runs.json, runs.csv and "
          f"{len(study.workloads) + 1} figures ({meta['seconds']:.0f} s)", file=sys.stderr)
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

        entries = tune(on_run=on_run, jobs=args.jobs)
        progress.update(sweeps, completed=len(TUNABLES))
    with atomic_folder(args.output, TUNE_OUTPUTS) as folder:
        write_tuned(entries, folder / "tuned.json")
    path = Path(args.output) / "tuned.json"
    for key, entry in entries.items():
        point = entry.get("point", {})
        extra = ", ".join([*(f"{k} {v:.3g}" for k, v in point.items() if k != "lr"),
                           *(f"{k} {v:.3g}" for k, v in entry.items() if k not in ("sweep", "lr", "point"))])
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
        self.experiment_bar = add("experiment", total=1, count="", what="")
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

    def experiment(self, index: int, total: int, name: str, text: str) -> None:
        self.progress.update(self.experiment_bar, total=total, completed=index, count=f"{index + 1}/{total}",
                             what=name)
        self._log(f"[{index + 1}/{total}] {text}")

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

"""The ``ravine`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ravine
from ravine import demo, schedules
from ravine.extras import CommandError, require
from ravine.race.run import LR_MODES
from ravine.registry import match_names

BENCHMARKS = {
    "step": "GB/s of every optimizer's step against torch's",
    "muon": "Muon's Newton–Schulz against torch.optim.Muon",
    "compile": "first fused step's compile time, cold and warm cache",
    "memory": "peak memory and step time of training with each memory-saving option",
    "shards": "fused step on FSDP2 shards (2 processes) against the same step on plain tensors",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ravine", description=ravine.__doc__)
    parser.add_argument("--version", action="version", version=f"ravine {ravine.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="train a small network on two spirals with every optimizer and print a table"
    )
    demo_parser.add_argument("--steps", type=_positive_int, default=300, help="full-batch steps (default 300)")
    demo_parser.add_argument(
        "--optimizers", default=",".join(demo.OPTIMIZERS),
        help=f"comma-separated subset of: {', '.join(demo.OPTIMIZERS)}",
    )
    demo_parser.add_argument("--seed", type=int, default=0)

    schedule_parser = commands.add_parser("schedule", help="learning-rate schedules")
    schedule_commands = schedule_parser.add_subparsers(dest="schedule_command", required=True)
    plot = schedule_commands.add_parser(
        "plot", help="draw a schedule to a PNG",
        description="Draw a schedule, e.g.: ravine schedule plot warmup_cosine --steps 1000 "
        "lr=3e-4 warmup_steps=100 total_steps=1000 -o warmup_cosine.png",
    )
    plot.add_argument("name", choices=sorted(schedules.SCHEDULES), help="the schedule")
    plot.add_argument("params", nargs="*", metavar="KEY=VALUE",
                      help="the schedule's arguments (lr defaults to 1e-3)")
    plot.add_argument("--steps", type=_positive_int, default=1000, help="steps to draw (default 1000)")
    plot.add_argument("-o", "--output", default=None, help="PNG path (default: NAME.png)")

    race_parser = commands.add_parser(
        "race", help="race ravine's optimizers down 2-D loss surfaces (tables + PNGs); 'race tune' refits lrs"
    )
    race_parser.add_argument("action", nargs="?", choices=["tune"], help="regenerate the tuned learning rates")
    race_parser.add_argument("--surfaces", default=None, help="comma-separated subset (default: all)")
    race_parser.add_argument("--optimizers", default=None, help="comma-separated subset (default: all)")
    race_parser.add_argument("--steps", type=_positive_int, default=300)
    race_parser.add_argument("--start", default=None, help="x,y start point for every surface")
    race_parser.add_argument("--lr-mode", choices=LR_MODES, default=None,
                             help="tuned (default): the learning rates tuned per surface; shared: one lr for all "
                                  "(--lr); default: each optimizer's own default lr")
    race_parser.add_argument("--lr", type=float, default=None,
                             help="one lr for every optimizer (implies --lr-mode shared; default 0.01 there)")
    race_parser.add_argument("--tuned", default=None, metavar="FILE",
                             help="a tuned_lrs.json written by 'ravine race tune' (default: the shipped table)")
    race_parser.add_argument("--noise", type=float, default=0.0, help="σ of Gaussian noise added to gradients")
    race_parser.add_argument("--seed", type=int, default=0)
    race_parser.add_argument("-o", "--output", default=None,
                             help="output folder, replaced whole when the run completes (default ./race; "
                                  "./race-tune for 'race tune')")
    race_parser.add_argument("--serve", action="store_true",
                             help="serve the page live on 127.0.0.1: click a surface to start there")
    race_parser.add_argument("--port", type=int, default=8050, help="port of --serve (default 8050)")

    from ravine.experiments.cli import add_parser as add_compare_parser

    add_compare_parser(commands)

    bench = commands.add_parser(
        "bench", help="benchmarks: " + "; ".join(f"'{k}' ({v})" for k, v in BENCHMARKS.items()), add_help=False,
        description="Benchmarks (never timed tests). Each has its own options: ravine bench NAME --help.")
    bench.add_argument("benchmark", nargs="?", choices=list(BENCHMARKS), help="; ".join(
        f"{k}: {v}" for k, v in BENCHMARKS.items()))
    bench.add_argument("-h", "--help", action="store_true", help="show this help (or a benchmark's) and exit")
    bench.set_defaults(bench_parser=bench)
    return parser


def _bench(args: argparse.Namespace, extra: list[str]) -> int:
    if args.benchmark is None:
        bench_parser = args.bench_parser
        if args.help:
            bench_parser.print_help()
            return 0
        bench_parser.print_usage(sys.stderr)
        print("ravine bench: choose a benchmark: " + ", ".join(BENCHMARKS), file=sys.stderr)
        return 2
    from importlib import import_module

    module = import_module(f"ravine.bench.{args.benchmark}")
    return module.main([*extra, "--help"] if args.help else extra)


def _parse_value(text: str) -> int | float | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def run_schedule_plot(args: argparse.Namespace) -> int:
    require("ravine schedule plot", "plot", "matplotlib")
    from ravine.plotting import plot_schedule

    params: dict[str, int | float | None] = {"lr": 1e-3}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"ravine schedule plot: expected KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        try:
            params[key] = _parse_value(value)
        except ValueError:
            print(f"ravine schedule plot: {key}={value!r} is not a number", file=sys.stderr)
            return 2
    try:
        schedule = schedules.SCHEDULES[args.name](**params)
    except (TypeError, ValueError) as error:
        print(f"ravine schedule plot {args.name}: {error}", file=sys.stderr)
        return 2
    path = plot_schedule(schedule, args.steps, args.output or f"{args.name}.png")
    print(f"wrote {path} ({schedule!r}, {args.steps} steps)")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    names, unknown = match_names([n.strip() for n in args.optimizers.split(",") if n.strip()],
                                 list(demo.OPTIMIZERS))
    if unknown:
        print(f"ravine demo: unknown optimizer(s) {unknown}; choose from {list(demo.OPTIMIZERS)}", file=sys.stderr)
        return 2
    results = []
    for i, name in enumerate(names, start=1):
        print(f"[{i}/{len(names)}] training with {name} for {args.steps} steps ...", file=sys.stderr, flush=True)
        results.append(demo.train(name, steps=args.steps, seed=args.seed))
    print(demo.format_table(results))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a problem it reports in one line exits 2, Ctrl-C exits 130 with one line."""
    try:
        return _main(argv)
    except CommandError as error:
        print(error, file=sys.stderr)  # it names the command
        return 2
    except KeyboardInterrupt:
        print("\nravine: interrupted; nothing was written (outputs are replaced only when a run completes)",
              file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":  # each benchmark parses its own options
        return _bench(args, extra)
    # KEY=VALUE schedule arguments may follow options such as --steps; everything else is an error.
    if extra and not (args.command == "schedule" and all("=" in item for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "schedule":
        args.params = [*args.params, *extra]
    if args.command == "demo":
        return run_demo(args)
    if args.command == "schedule":
        return run_schedule_plot(args)
    if args.command == "race":
        from ravine.race.cli import run_race

        return run_race(args)
    if args.command == "compare":
        from ravine.experiments.cli import run_compare

        return run_compare(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())

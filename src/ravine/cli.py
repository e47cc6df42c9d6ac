"""The ``ravine`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ravine
from ravine import demo


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
    return parser


def run_demo(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in demo.OPTIMIZERS]
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
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())

"""Optimizer-step benchmark; see ravine.bench.step. Usage: python benchmarks/step.py [--scale S] [-o DIR]."""

import sys

from ravine.bench.step import main

if __name__ == "__main__":
    sys.exit(main())

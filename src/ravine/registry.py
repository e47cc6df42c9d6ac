"""Every ravine algorithm by name: one table, read by :func:`ravine.create_optimizer` and the tests."""

from __future__ import annotations

import torch

from ravine.algorithms import (
    ADOPT,
    ASGD,
    LBFGS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Muon,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    SparseAdam,
)

__all__ = ["ALGORITHMS", "canonical", "match_names", "resolve"]

# name → class; the name is the class name lower-cased (torch.optim's spelling), aliases below.
ALGORITHMS: dict[str, type[torch.optim.Optimizer]] = {
    cls.__name__.lower(): cls
    for cls in (SGD, Adagrad, RMSprop, Adam, AdamW, Lion, ADOPT, Adadelta, Adafactor, Adamax, ASGD, LBFGS, Muon,
                NAdam, RAdam, Rprop, SparseAdam)
}
ALIASES = {"sparse_adam": "sparseadam", "l_bfgs": "lbfgs", "sgd_momentum": "sgd"}


def canonical(name: str) -> str:
    """A name as the registry spells it: case-insensitive, ``-`` and ``_`` alike (``AdaGrad`` → ``adagrad``)."""
    key = name.strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def resolve(name: str) -> type[torch.optim.Optimizer] | None:
    """The class for ``name``, or None."""
    return ALGORITHMS.get(canonical(name))


def match_names(names: list[str], known: list[str]) -> tuple[list[str], list[str]]:
    """``names`` spelled as in ``known`` (any case, ``-``/``_`` alike), and those that match nothing."""
    by_key = {canonical(k): k for k in known}
    matched = [by_key[canonical(n)] for n in names if canonical(n) in by_key]
    return matched, [n for n in names if canonical(n) not in by_key]

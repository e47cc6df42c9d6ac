"""Every ravine algorithm by name, and the named variants the commands compare: one table for all.

:data:`ALGORITHMS` (torch's class names, lower-cased) is what :func:`ravine.create_optimizer` reads;
:data:`VARIANTS` (an algorithm with fixed options, e.g. Momentum = SGD with momentum 0.9) is what ``ravine race``,
``ravine demo`` and ``ravine bench step`` show. Every command matches names case-insensitively, with ``-`` and
``_`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    AdEMAMix,
    Lion,
    Muon,
    MuonWithAuxAdam,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    ScheduleFreeAdamW,
    ScheduleFreeRAdam,
    ScheduleFreeSGD,
    SparseAdam,
)
from ravine.lookahead import Lookahead
from ravine.muon_routing import muon_param_groups

__all__ = ["ALGORITHMS", "MODEL_ROUTERS", "VARIANTS", "Variant", "canonical", "match_names", "resolve"]

# name → class; the name is the class name lower-cased (torch.optim's spelling), aliases below.
ALGORITHMS: dict[str, type[torch.optim.Optimizer]] = {
    cls.__name__.lower(): cls
    for cls in (SGD, Adagrad, RMSprop, Adam, AdamW, AdEMAMix, Lion, ADOPT, Adadelta, Adafactor, Adamax, ASGD,
                LBFGS, Muon, MuonWithAuxAdam, NAdam, RAdam, Rprop, ScheduleFreeSGD, ScheduleFreeAdamW,
                ScheduleFreeRAdam, SparseAdam)
}
ALIASES = {"sparse_adam": "sparseadam", "l_bfgs": "lbfgs", "sgd_momentum": "sgd",
           "muon_with_aux_adam": "muonwithauxadam", "schedule_free_sgd": "schedulefreesgd",
           "schedule_free_adamw": "schedulefreeadamw", "sgdschedulefree": "schedulefreesgd",
           "adamwschedulefree": "schedulefreeadamw", "schedule_free_radam": "schedulefreeradam",
           "radamschedulefree": "schedulefreeradam"}

# Algorithms whose parameter groups are built from a model by rule: create_optimizer(name, model, **options)
# calls the router with the options (MuonWithAuxAdam's groups come from ravine.muon_param_groups).
MODEL_ROUTERS: dict[str, Any] = {"muonwithauxadam": muon_param_groups}


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


# ---- named variants: an algorithm with fixed options, under the one name every command shows ----------------
@dataclass(frozen=True)
class Variant:
    """An algorithm with fixed options — what the race, the demo and the step benchmark compare.

    ``default_lr`` is the algorithm's own default (the race's ``--lr-mode default``); ``demo_lr`` an
    illustrative rate for ``ravine demo`` (not tuned); ``in_race`` whether ``ravine race`` runs it (its tuned
    rates live in ``race/tuned_lrs.json``) and ``in_demo`` whether ``ravine demo`` does.
    """

    name: str
    algorithm: str
    options: dict[str, Any] = field(default_factory=dict)
    default_lr: float = 1e-3
    demo_lr: float = 1e-2
    in_race: bool = True
    in_demo: bool = True
    lookahead: bool = False

    def build(self, params: Any, lr: float, **flags: Any) -> torch.optim.Optimizer:
        """This variant over ``params`` at ``lr`` (engine flags such as ``fused=True`` passed on)."""
        inner = ALGORITHMS[self.algorithm](params, lr=lr, **self.options, **flags)
        return Lookahead(inner) if self.lookahead else inner


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("SGD", "sgd", default_lr=1e-3, demo_lr=0.1),
    Variant("Momentum", "sgd", {"momentum": 0.9}, default_lr=1e-3, demo_lr=0.1),
    Variant("Nesterov", "sgd", {"momentum": 0.9, "nesterov": True}, default_lr=1e-3, demo_lr=0.1),
    Variant("Adagrad", "adagrad", default_lr=1e-2, demo_lr=0.05),
    Variant("RMSprop", "rmsprop", default_lr=1e-2, demo_lr=3e-3),
    Variant("Adam", "adam", default_lr=1e-3, demo_lr=1e-2),
    Variant("AMSGrad", "adam", {"amsgrad": True}, default_lr=1e-3, demo_lr=1e-2),
    Variant("AdamW", "adamw", default_lr=1e-3, demo_lr=1e-2),
    Variant("Lion", "lion", default_lr=1e-4, demo_lr=1e-3),
    Variant("ADOPT", "adopt", default_lr=1e-3, demo_lr=1e-2),
    Variant("Lookahead(Adam)", "adam", default_lr=1e-3, demo_lr=1e-2, lookahead=True),
    Variant("Schedule-Free AdamW", "schedulefreeadamw", {"weight_decay": 0.0}, default_lr=2.5e-3, demo_lr=1e-2),
    Variant("Schedule-Free RAdam", "schedulefreeradam", {"weight_decay": 0.0}, default_lr=2.5e-3, demo_lr=1e-2,
            in_race=False),
    Variant("NAdam", "nadam", default_lr=2e-3, demo_lr=1e-2, in_race=False),
    Variant("RAdam", "radam", default_lr=1e-3, demo_lr=1e-2, in_race=False),
    Variant("Adamax", "adamax", default_lr=2e-3, demo_lr=1e-2, in_race=False),
    Variant("Adadelta", "adadelta", default_lr=1.0, demo_lr=1.0, in_race=False),
    Variant("Adafactor", "adafactor", default_lr=1e-2, demo_lr=1e-2, in_race=False),
    Variant("ASGD", "asgd", default_lr=1e-2, demo_lr=0.1, in_race=False),
    Variant("Rprop", "rprop", default_lr=1e-2, demo_lr=1e-2, in_race=False),
    Variant("Lookahead(AdamW)", "adamw", default_lr=1e-3, in_race=False, in_demo=False, lookahead=True),
    Variant("Cautious AdamW", "adamw", {"cautious": True}, default_lr=1e-3, demo_lr=1e-2, in_race=False),
    Variant("AdEMAMix", "ademamix", default_lr=1e-3, demo_lr=1e-2, in_race=False),
]}

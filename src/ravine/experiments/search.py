"""Search spaces and quasi-random trials: every optimizer in a study gets the same number of tuning trials.

Following AlgoPerf's external-tuning rules (Dahl et al. 2023) and Choi et al. 2019 ("On Empirical Comparisons of
Optimizers for Deep Learning": the search space decides the ranking), each optimizer has one stated search space
over its learning rate, momentum terms, ε, weight decay and warmup, and trials are drawn from it by a scrambled
Sobol sequence with a fixed seed, so the draws are spread evenly and are the same on every machine. Values are
rounded to 3 significant digits: a trial can be written down and rerun by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from ravine.experiments.train import WARMUP_FRACTION, Arm

SOBOL_SEED = 0
SIGNIFICANT = 3


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: ``scale`` is ``log`` (log-uniform over [low, high]), ``linear`` (uniform)
    or ``one-minus-log`` (1 − value log-uniform over [1 − high, 1 − low]: for β and momentum close to 1)."""

    name: str
    low: float
    high: float
    scale: str = "log"

    def value(self, u: float) -> float:
        """The point at quantile ``u`` in [0, 1), to 3 significant digits."""
        if self.scale == "log":
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        elif self.scale == "linear":
            value = self.low + u * (self.high - self.low)
        else:  # one-minus-log
            value = 1 - math.exp(math.log(1 - self.high) + u * (math.log(1 - self.low) - math.log(1 - self.high)))
        return _round(value)

    def describe(self) -> str:
        if self.scale == "one-minus-log":
            return f"{self.name} ∈ [{self.low:g}, {self.high:g}], 1 − {self.name} log-uniform"
        return f"{self.name} ∈ [{self.low:g}, {self.high:g}], {'log-' if self.scale == 'log' else ''}uniform"


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


@dataclass(frozen=True)
class SearchSpace:
    """An optimizer and the space its trials are drawn from.

    ``optimizer`` is a :func:`ravine.create_optimizer` name; ``fixed`` are options every trial shares;
    ``schedule`` is the lr schedule (a ``warmup`` dimension sets its warmup fraction; with ``warmup_option``
    the warmup is the optimizer's own, as Schedule-Free's ``warmup_steps``). The dimensions ``beta1`` and
    ``beta2`` become ``betas`` (or ``adam_betas`` when ``betas_option`` says so); any other dimension is
    passed as the option of its name.
    """

    label: str
    optimizer: str
    dimensions: tuple[Dimension, ...]
    fixed: tuple[tuple[str, Any], ...] = ()
    schedule: str = "warmup_cosine"
    warmup_option: str | None = None
    betas_option: str = "betas"
    betas_default: tuple[float, float] = (0.9, 0.999)
    source: str = ""

    def trials(self, count: int, seed: int = SOBOL_SEED) -> list[dict[str, float]]:
        """The first ``count`` points of the scrambled Sobol sequence (seed ``seed``), as hyperparameters."""
        if count < 1:
            raise ValueError(f"Invalid trials: {count} (trials must be a positive integer)")
        engine = torch.quasirandom.SobolEngine(len(self.dimensions), scramble=True, seed=seed)
        points = engine.draw(count, dtype=torch.float64).tolist()
        return [{d.name: d.value(u) for d, u in zip(self.dimensions, point, strict=True)} for point in points]

    def arm(self, point: dict[str, float], steps: int, label: str | None = None) -> Arm:
        """The arm that runs ``point`` for ``steps`` steps."""
        values = dict(point)
        lr, warmup = values.pop("lr"), values.pop("warmup", WARMUP_FRACTION)
        options = dict(self.fixed)
        if "beta1" in values or "beta2" in values:
            default1, default2 = self.betas_default
            options[self.betas_option] = (values.pop("beta1", default1), values.pop("beta2", default2))
        options.update(values)
        arm = Arm(label or self.label, self.optimizer, lr, schedule=self.schedule)
        if self.warmup_option is not None:
            options[self.warmup_option] = round(warmup * steps)
        elif self.schedule == "warmup_cosine":
            arm = replace(arm, warmup=warmup)
        return replace(arm, options=tuple(options.items()))

    def describe(self) -> str:
        parts = [d.describe() for d in self.dimensions]
        if self.fixed:
            parts.append(", ".join(f"{k}={v}" for k, v in self.fixed))
        schedule = {"warmup_cosine": "linear warmup then cosine decay to 0",
                    "constant": "constant lr"}.get(self.schedule, self.schedule)
        if self.warmup_option:
            schedule += f" (warmup: the optimizer's {self.warmup_option} = warmup × steps)"
        return f"`{self.optimizer}`; " + "; ".join(parts) + f"; schedule: {schedule}"


WARMUP = Dimension("warmup", 0.02, 0.2, "linear")
BETA1 = Dimension("beta1", 0.7, 0.98, "one-minus-log")
BETA2 = Dimension("beta2", 0.9, 0.999, "one-minus-log")
EPS = Dimension("eps", 1e-10, 1e-5)
DECOUPLED_DECAY = Dimension("weight_decay", 1e-4, 1.0)  # multiplied by the lr in the update

SPACES: dict[str, SearchSpace] = {space.label: space for space in (
    SearchSpace("AdamW", "adamw", (Dimension("lr", 1e-4, 1e-1), BETA1, BETA2, EPS, DECOUPLED_DECAY, WARMUP),
                source="Loshchilov & Hutter 2019"),
    SearchSpace("SGD + momentum", "sgd",
                (Dimension("lr", 1e-3, 1.0), Dimension("momentum", 0.7, 0.98, "one-minus-log"),
                 Dimension("weight_decay", 1e-6, 1e-2), WARMUP), fixed=(("nesterov", True),),
                source="Nesterov momentum, as AlgoPerf's baseline"),
    SearchSpace("Lion", "lion",
                (Dimension("lr", 1e-5, 1e-2), BETA1, BETA2, Dimension("weight_decay", 1e-3, 10.0), WARMUP),
                betas_default=(0.9, 0.99), source="Chen et al. 2023"),
    SearchSpace("Schedule-Free AdamW", "schedule_free_adamw",
                (Dimension("lr", 1e-4, 1e-1), BETA1, BETA2, EPS, DECOUPLED_DECAY, WARMUP),
                schedule="constant", warmup_option="warmup_steps", source="Defazio et al. 2024"),
    SearchSpace("Muon + AdamW", "muon_with_aux_adam",
                (Dimension("lr", 1e-3, 0.3), Dimension("adam_lr", 1e-4, 1e-1),
                 Dimension("momentum", 0.7, 0.98, "one-minus-log"), Dimension("weight_decay", 1e-4, 1.0),
                 WARMUP), betas_option="adam_betas", source="Jordan et al. 2024 (Muon for the hidden matrices, "
                                                           "AdamW for the rest)"),
)}
DEFAULT_OPTIMIZERS = tuple(SPACES)


def lr_only(space: SearchSpace) -> SearchSpace:
    """``space`` searched over its learning rate alone, every other hyperparameter at its default (a warmup
    schedule keeps its default fraction): the tuning protocol most optimizer papers use."""
    return replace(space, dimensions=tuple(d for d in space.dimensions if d.name == "lr"))


def select(names: list[str] | None) -> list[SearchSpace]:
    """Search spaces by label (case-insensitive) or optimizer name; all of them when ``names`` is empty."""
    if not names:
        return list(SPACES.values())
    chosen = []
    for name in names:
        key = name.strip().lower()
        space = next((s for s in SPACES.values() if key in (s.label.lower(), s.optimizer)), None)
        if space is None:
            raise ValueError(f"Invalid optimizer: {name!r} (choose from "
                             f"{', '.join(f'{s.optimizer} ({s.label})' for s in SPACES.values())})")
        if space not in chosen:
            chosen.append(space)
    return chosen

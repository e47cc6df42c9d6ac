"""Running the claims' arms over the seeds, each distinct run once, reporting progress as it goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ravine.experiments.claims import Check, Claim, Runs, Tuned
from ravine.experiments.tasks import TASKS, Task
from ravine.experiments.train import Arm, Run, stopping_steps, train


class Listener(Protocol):
    """What a progress display is told (see ``ravine.experiments.cli``)."""

    def planned(self, total_cost: float) -> None: ...

    def experiment(self, index: int, total: int, name: str, text: str) -> None: ...

    def arm(self, index: int, total: int, arm: Arm) -> None: ...

    def seed(self, index: int, total: int, seed: int, steps: int) -> None: ...

    def step(self, done: int, cost: float) -> None: ...


@dataclass
class Outcome:
    claim: Claim
    arms: list[Arm]
    runs: Runs
    checks: list[Check]

    @property
    def verdict(self) -> str:
        return self.claim.verdict(self.checks)


def budget(task: str, quick: bool, arm: Arm | None = None) -> tuple[int, int]:
    """(steps, eval_every) of ``task`` in the chosen mode, for ``arm`` (its ``budget`` fraction of the steps)."""
    spec = TASKS[task]
    steps, every = (spec.quick_steps, spec.quick_eval_every) if quick else (spec.steps, spec.eval_every)
    return stopping_steps(steps, every, 1.0 if arm is None else arm.budget)


def _key(task: str, arm: Arm, seed: int, steps: int) -> tuple:
    return task, replace(arm, label=""), seed, steps  # the label is only a name: equal arms share runs


def run_claims(claims: Sequence[Claim], tuned: Tuned, seeds: Sequence[int], quick: bool = False,
               device: torch.device | str = "cpu", listener: Listener | None = None) -> list[Outcome]:
    """Run every arm of every claim for every seed (a run two claims share is run once) and judge the claims."""
    plans = [(claim, claim.arms(tuned)) for claim in claims]
    cache: dict[tuple, Run] = {}
    keys = {_key(claim.task, arm, seed, budget(claim.task, quick, arm)[0])
            for claim, arms in plans for arm in arms for seed in seeds}
    if listener is not None:
        listener.planned(sum(TASKS[task].step_cost * steps for task, _, _, steps in keys))
    outcomes = []
    for c, (claim, arms) in enumerate(plans):
        task = TASKS[claim.task]
        if listener is not None:
            listener.experiment(c, len(plans), f"{claim.number}. {claim.key}",
                                f"claim {claim.number}: {claim.statement}")
        runs: Runs = {}
        for a, arm in enumerate(arms):
            if listener is not None:
                listener.arm(a, len(arms), arm)
            runs[arm.label] = []
            steps, eval_every = budget(claim.task, quick, arm)
            for s, seed in enumerate(seeds):
                key = _key(claim.task, arm, seed, steps)
                if key not in cache:
                    if listener is not None:
                        listener.seed(s, len(seeds), seed, steps)
                    cache[key] = train_reporting(task, arm, seed, steps, eval_every, device, listener)
                runs[arm.label].append(replace(cache[key], arm=arm))
        outcomes.append(Outcome(claim, arms, runs, claim.checks(runs, tuned)))
    return outcomes


def train_reporting(task: Task, arm: Arm, seed: int, steps: int, eval_every: int, device: torch.device | str,
                    listener: Listener | None) -> Run:
    """:func:`train`, telling ``listener`` (if any) the steps done as it goes."""
    stepper = None if listener is None else _Stepper(listener, task.step_cost)
    run = train(task, arm, seed, steps, eval_every, device, stepper)
    if stepper is not None:
        stepper.report(steps)  # a diverged run stops early: its remaining steps count as done
    return run


class _Stepper:
    """Forwards a run's step count to the listener every 10 steps, with the cost done since the last call."""

    def __init__(self, listener: Listener, cost: float) -> None:
        self.listener, self.cost, self.reported = listener, cost, 0

    def __call__(self, done: int) -> None:
        if done - self.reported >= 10:
            self.report(done)

    def report(self, done: int) -> None:
        if done > self.reported:
            self.listener.step(done, self.cost * (done - self.reported))
            self.reported = done

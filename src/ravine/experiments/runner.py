"""Running the claims' arms over the seeds, each distinct run once, reporting progress as it goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ravine.experiments import parallel
from ravine.experiments.claims import Check, Claim, Runs, Tuned
from ravine.experiments.parallel import Request, Throttle
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
    if arm is not None and arm.eval_every is not None:
        every = arm.eval_every
    return stopping_steps(steps, every, 1.0 if arm is None else arm.budget)


def task_of(claim: Claim, arm: Arm) -> str:
    """The workload ``arm`` runs on: its own when it names one, else its claim's."""
    return arm.task or claim.task


def _key(task: str, arm: Arm, seed: int, steps: int) -> tuple:
    return task, replace(arm, label=""), seed, steps  # the label is only a name: equal arms share runs


def run_claims(claims: Sequence[Claim], tuned: Tuned, seeds: Sequence[int], quick: bool = False,
               device: torch.device | str = "cpu", listener: Listener | None = None, jobs: int = 1
               ) -> list[Outcome]:
    """Run every arm of every claim for every seed (a run two claims share is run once; ``jobs`` runs at a time,
    see :mod:`.parallel`) and judge the claims."""
    plans = [(claim, claim.arms(tuned)) for claim in claims]
    requests: dict[tuple, Request] = {}
    where: dict[tuple, tuple[int, int, int]] = {}  # the first (claim, arm, seed) indices that ask for the run
    arm_keys: dict[tuple[int, int], list[tuple]] = {}  # (claim, arm) indices -> its runs' keys, one per seed
    for c, (claim, arms) in enumerate(plans):
        for a, arm in enumerate(arms):
            task = task_of(claim, arm)
            steps, eval_every = budget(task, quick, arm)
            arm_keys[c, a] = [_key(task, arm, seed, steps) for seed in seeds]
            for s, (seed, key) in enumerate(zip(seeds, arm_keys[c, a], strict=True)):
                if key not in requests:
                    requests[key] = Request(task, arm, seed, steps, eval_every)
                    where[key] = (c, a, s)
    keys = list(requests)
    display = None if listener is None else _Display(listener, plans, seeds, [requests[k] for k in keys],
                                                     [where[k] for k in keys])
    if display is not None:
        listener.planned(sum(TASKS[r.task].step_cost * r.steps for r in requests.values()))
    runs = parallel.run_all([requests[k] for k in keys], jobs, device, display and display.start,
                            display and display.steps)
    cache = dict(zip(keys, runs, strict=True))
    outcomes = []
    for c, (claim, arms) in enumerate(plans):
        results: Runs = {arm.label: [replace(cache[key], arm=arm) for key in arm_keys[c, a]]
                         for a, arm in enumerate(arms)}
        outcomes.append(Outcome(claim, arms, results, claim.checks(results, tuned)))
    return outcomes


class _Display:
    """Tells the listener which claim, arm and seed the run that started last belongs to, and every run's
    progress (the step count shown is the last-started run's; every run's cost goes into the total)."""

    def __init__(self, listener: Listener, plans: list[tuple[Claim, list[Arm]]], seeds: Sequence[int],
                 requests: list[Request], where: list[tuple[int, int, int]]) -> None:
        self.listener, self.plans, self.seeds, self.requests, self.where = listener, plans, seeds, requests, where
        self.shown: tuple[int, int] | None = None  # (claim, arm) on display
        self.current, self.current_done = -1, 0
        self.reported = [0] * len(requests)

    def start(self, i: int) -> None:
        c, a, s = self.where[i]
        claim, arms = self.plans[c]
        if self.shown is None or self.shown[0] != c:
            self.listener.experiment(c, len(self.plans), f"{claim.number}. {claim.key}",
                                     f"claim {claim.number}: {claim.statement}")
        if self.shown != (c, a):
            self.listener.arm(a, len(arms), arms[a])
        self.shown = (c, a)
        self.listener.seed(s, len(self.seeds), self.seeds[s], self.requests[i].steps)
        self.current, self.current_done = i, 0

    def steps(self, i: int, done: int) -> None:
        if done <= self.reported[i]:
            return
        cost = TASKS[self.requests[i].task].step_cost * (done - self.reported[i])
        self.reported[i] = done
        if i == self.current:
            self.current_done = done
        self.listener.step(self.current_done, cost)


def train_reporting(task: Task, arm: Arm, seed: int, steps: int, eval_every: int, device: torch.device | str,
                    listener: Listener | None) -> Run:
    """:func:`train`, telling ``listener`` (if any) the steps done as it goes, with their cost."""
    if listener is None:
        return train(task, arm, seed, steps, eval_every, device)
    reported = 0

    def report(done: int) -> None:
        nonlocal reported
        if done > reported:
            listener.step(done, task.step_cost * (done - reported))
            reported = done

    run = train(task, arm, seed, steps, eval_every, device, Throttle(report))
    report(steps)  # a diverged run stops early: its remaining steps count as done
    return run

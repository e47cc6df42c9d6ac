"""A tuning study: every optimizer gets the same number of quasi-random trials on every workload, then its best
trial is rerun over the reported seeds and timed to the workload's target.

The method follows MLCommons AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms"):

1. **Equal tuning budgets.** Each optimizer runs the same ``trials`` points of its search space
   (:mod:`.search`) on the workload's first tuning seed, for the full step budget. The objective is the final
   validation loss; a diverged trial scores as an untrained model.
2. **The budget axis.** What an optimizer reaches with ``k`` trials is the expected best objective of ``k``
   trials drawn from the ``trials`` run, without replacement (computed exactly from the order statistics, as in
   Dodge et al. 2019, "Show Your Work"), for every ``k`` from 1 to ``trials``.
3. **Time to result.** The best trial is rerun on seeds 0…N−1 (paired: a seed fixes the initial weights and the
   batches); a run's time to target is its first evaluation step whose validation loss is at or below the
   workload's target. Across workloads the optimizers are compared by performance profiles: the fraction of
   workloads an optimizer reaches the target within τ × the fastest optimizer's steps.
4. **When you stop matters** (Wen et al. 2025, "Fantastic Pretraining Optimizers and Where to Find Them"): the
   best trial is also run at ¼ and ½ of the budget with its schedule rescaled to that budget, so a ranking that
   flips with the budget shows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ravine.experiments import stats
from ravine.experiments.runner import Listener, train_reporting
from ravine.experiments.search import SearchSpace
from ravine.experiments.tasks import Task
from ravine.experiments.train import STOPPING_POINTS, Run, stopping_steps

PROFILE_TAUS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
TAU_MAX = 4.0  # AlgoPerf integrates its profiles up to τ = 4


@dataclass
class Trial:
    index: int
    point: dict[str, float]
    run: Run
    objective: float  # final validation loss; an untrained model's if the run diverged


@dataclass
class Entry:
    """One optimizer on one workload: its trials, the best one, and that one rerun over the seeds at each
    stopping point (``finals[fraction]``, runs ordered by seed)."""

    space: SearchSpace
    trials: list[Trial]
    finals: dict[float, list[Run]] = field(default_factory=dict)

    @property
    def best(self) -> Trial:
        return min(self.trials, key=lambda t: (t.objective, t.index))

    def expected_best(self, k: int) -> float:
        return expected_best_of(sorted(t.objective for t in self.trials), k)

    @property
    def full(self) -> list[Run]:
        return self.finals[1.0]


@dataclass
class Workload:
    task: Task
    steps: int
    eval_every: int
    entries: list[Entry]

    def entry(self, label: str) -> Entry:
        """The entry of the optimizer labelled ``label``."""
        return next(e for e in self.entries if e.space.label == label)


@dataclass
class Study:
    workloads: list[Workload]
    trials: int
    seeds: list[int]
    search: str  # "full" or "lr"
    quick: bool


def expected_best_of(objectives: Sequence[float], k: int) -> float:
    """The expected minimum of ``k`` values drawn without replacement from ``objectives`` (sorted ascending).

    The i-th smallest (1-based) is the minimum of a random k-subset with probability C(n − i, k − 1) / C(n, k).
    """
    n = len(objectives)
    if not 1 <= k <= n:
        raise ValueError(f"Invalid k: {k} (between 1 and the {n} trials)")
    total = math.comb(n, k)
    return math.fsum(v * math.comb(n - i, k - 1) for i, v in enumerate(objectives, start=1)) / total


def steps_to_target(run: Run, target: float) -> int | None:
    """The first evaluation step whose validation loss is at or below ``target`` (None: never, or diverged)."""
    return next((step for step, loss, _ in run.evals if loss <= target), None)


def seconds_to_target(run: Run, target: float) -> float | None:
    return next((seconds for (_, loss, _), seconds in zip(run.evals, run.eval_seconds, strict=True)
                 if loss <= target), None)


def median_steps(runs: Sequence[Run], target: float) -> float:
    """The median over seeds of the steps to target, a seed that never reached it counting as ∞."""
    return statistics.median(math.inf if (s := steps_to_target(r, target)) is None else s for r in runs)


def profile(times: dict[str, list[float]], tau: float) -> dict[str, float]:
    """AlgoPerf's performance profile at ``tau``: per optimizer, the fraction of workloads whose time is at most
    ``tau`` × the fastest optimizer's on that workload (``times[optimizer][w]``; ∞ = target not reached)."""
    count = len(next(iter(times.values())))
    best = [min(per[w] for per in times.values()) for w in range(count)]
    return {name: sum(math.isfinite(t) and t <= tau * b for t, b in zip(per, best, strict=True)) / count
            for name, per in times.items()}


def profile_area(times: dict[str, list[float]], tau_max: float = TAU_MAX) -> dict[str, float]:
    """The area under each optimizer's profile over τ ∈ [1, tau_max], divided by (tau_max − 1): 1 is always
    fastest, 0 never within tau_max × the fastest (AlgoPerf's benchmark score)."""
    count = len(next(iter(times.values())))
    best = [min(per[w] for per in times.values()) for w in range(count)]
    areas = {}
    for name, per in times.items():
        area = sum(max(0.0, tau_max - max(1.0, t / b)) for t, b in zip(per, best, strict=True)
                   if math.isfinite(t) and t <= tau_max * b)
        areas[name] = area / ((tau_max - 1) * count)
    return areas


def step_times(study: Study) -> dict[str, list[float]]:
    """Median steps to target per optimizer, one per workload (∞ where it did not reach the target)."""
    names = [e.space.label for e in study.workloads[0].entries]
    return {name: [median_steps(w.entry(name).full, w.task.target) for w in study.workloads] for name in names}


def paired_log_loss(a: Sequence[Run], b: Sequence[Run]) -> stats.Difference:
    """The paired difference of ln test loss between two optimizers' runs (ordered by the same seeds)."""
    return stats.paired_difference([math.log(r.test_loss) for r in a], [math.log(r.test_loss) for r in b])


def plan_cost(tasks: Sequence[tuple[Task, int]], spaces: int, trials: int, seeds: int) -> float:
    """The study's total cost in the listener's units (steps × step cost)."""
    per_optimizer = [task.step_cost * steps * (trials + seeds * sum(STOPPING_POINTS)) for task, steps in tasks]
    return spaces * sum(per_optimizer)


def estimate_seconds(task: Task, steps: int, spaces: Sequence[SearchSpace], trials: int, seeds: int,
                     device: torch.device | str = "cpu", probe: int = 3) -> float:
    """The seconds a workload's part of the study should take: ``probe`` steps of each optimizer's first trial
    are timed (after two untimed ones), then scaled to every run the study makes."""
    import time

    import ravine

    device = torch.device(device)
    total = 0.0
    runs = trials + seeds * sum(STOPPING_POINTS)
    for space in spaces:
        arm = space.arm(space.trials(1)[0], steps)
        torch.manual_seed(0)
        model = task.model(0, device)
        optimizer = ravine.create_optimizer(arm.optimizer, model, lr=arm.lr, **arm.kwargs)
        generator = torch.Generator().manual_seed(0)
        for step in range(2 + probe):
            if step == 2:
                started = time.perf_counter()
            loss = task.loss(model, task.batch(generator, device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += (time.perf_counter() - started) / probe * steps * runs
    return total


def run_study(tasks: Sequence[tuple[Task, int, int]], spaces: Sequence[SearchSpace], trials: int,
              seeds: Sequence[int], search: str = "full", quick: bool = False, device: torch.device | str = "cpu",
              listener: Listener | None = None) -> Study:
    """Tune every search space on every task (``(task, steps, eval_every)``) with ``trials`` trials, then rerun
    each best trial over ``seeds`` at every stopping point."""
    if listener is not None:
        listener.planned(plan_cost([(t, steps) for t, steps, _ in tasks], len(spaces), trials, len(seeds)))
    study = Study([], trials, list(seeds), search, quick)
    experiments = len(tasks) * len(spaces)
    for w, (task, steps, eval_every) in enumerate(tasks):
        workload = Workload(task, steps, eval_every, [])
        for s, space in enumerate(spaces):
            if listener is not None:
                listener.experiment(w * len(spaces) + s, experiments, f"{task.name}: {space.label}",
                                    f"{task.name}: {space.label}, {trials} trials, then {len(seeds)} seeds")
            plan = [(fraction, seed) for fraction in STOPPING_POINTS for seed in seeds]
            entry = Entry(space, _tune(task, space, steps, eval_every, trials, trials + len(plan), device,
                                       listener))
            best = entry.best.point
            for f, fraction in enumerate(STOPPING_POINTS):
                budget, every = stopping_steps(steps, eval_every, fraction)
                arm = space.arm(best, budget, f"{space.label}, best trial, {fraction:g} of the steps")
                if listener is not None:
                    listener.arm(trials + f * len(seeds), trials + len(plan), arm)
                for i, seed in enumerate(seeds):
                    if listener is not None:
                        listener.seed(i, len(seeds), seed, budget)
                    run = train_reporting(task, arm, seed, budget, every, device, listener)
                    entry.finals.setdefault(fraction, []).append(run)
            workload.entries.append(entry)
        study.workloads.append(workload)
    return study


def _tune(task: Task, space: SearchSpace, steps: int, eval_every: int, trials: int, arms: int,
          device: torch.device | str, listener: Listener | None) -> list[Trial]:
    seed = task.tune_seeds[0]
    done = []
    for index, point in enumerate(space.trials(trials)):
        arm = space.arm(point, steps, f"{space.label}, trial {index + 1}")
        if listener is not None:
            listener.arm(index, arms, arm)
            listener.seed(0, 1, seed, steps)
        run = train_reporting(task, arm, seed, steps, eval_every, device, listener)
        diverged = run.diverged or not run.evals
        objective = task.untrained(seed, torch.device(device), "val")[0] if diverged else run.evals[-1][1]
        done.append(Trial(index + 1, point, run, objective))
    return done


def summary(study: Study) -> dict[str, Any]:
    """The numbers the report shows, as plain data (for runs.json)."""
    ks = budget_points(study.trials)
    out: dict[str, Any] = {"trials": study.trials, "seeds": study.seeds, "search": study.search, "workloads": {}}
    for w in study.workloads:
        out["workloads"][w.task.name] = {
            e.space.label: {
                "best_trial": e.best.index, "best_point": e.best.point,
                "expected_best": {k: e.expected_best(k) for k in ks},
                "median_steps_to_target": median_steps(e.full, w.task.target),
                "test_loss": [r.test_loss for r in e.full],
            } for e in w.entries}
    return out


def budget_points(trials: int) -> list[int]:
    """1, 2, 4, … up to ``trials`` (and ``trials`` itself): the budgets the report tabulates."""
    points = [k for k in (2 ** i for i in range(trials.bit_length())) if k <= trials]
    return points if points[-1] == trials else [*points, trials]

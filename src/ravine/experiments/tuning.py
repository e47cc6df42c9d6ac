"""The learning-rate (and weight-decay) sweep behind every tuned number the claims use.

Protocol, the same for every entry: the task's tuning seeds (1000–1002 for the digits, whose final losses are
noisy and runs cheap; 1000 for the GPT — never one of the reported seeds 0…N−1), the task's full step budget;
the objective is the final validation loss averaged over those seeds (+∞ if any run diverged).

* lr: a grid of half decades, ``default lr × 10^(k/2)`` for k = −4…4, extended by half decades (at most 6 more)
  while the best point sits on an edge; then the two quarter-decade neighbours of the best are tried.
  With ``find_divergence`` the sweep also walks up in half decades from the best lr until a run diverges and
  records that lr (``diverges_at``): the lr at which the clipping experiment's unclipped run explodes.
* weight decay: a fixed grid (0 and decades), at the lr tuned for the optimizer without weight decay.
* a search (``parameter="search"``): the first ``trials`` Sobol points of a stated search space
  (:mod:`.search`), the same number for every optimizer a claim compares; the best point is kept.

``ravine compare --tune`` reruns it and rewrites ``tuned.json`` in the package.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ravine.experiments.parallel import Request, Workers
from ravine.experiments.search import SPACES, Dimension, SearchSpace
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm

TUNED_FILE = "tuned.json"
EXTEND = 6  # at most this many half-decades beyond the initial grid


@dataclass(frozen=True)
class Tunable:
    """One sweep: ``arm`` on ``task`` (its lr is the grid's centre), over ``parameter`` ('lr', 'weight_decay',
    or 'search': ``trials`` points of ``space``); a weight-decay sweep runs at the lr of the entry ``lr_from``."""

    key: str
    task: str
    arm: Arm
    parameter: str = "lr"
    grid: tuple[float, ...] = ()
    lr_from: str | None = None
    find_divergence: bool = False
    space: SearchSpace | None = None
    trials: int = 16


MOMENTUM = (("momentum", 0.9),)
SEARCH_TRIALS = 16
# Choi et al. 2019 ("On Empirical Comparisons of Optimizers for Deep Learning") tune Adam's ε over many decades:
# at large ε Adam becomes momentum SGD, so a wide enough space contains SGD's best run
ADAM_EPS_SPACE = SearchSpace("Adam, lr and ε tuned", "adam",
                             (Dimension("lr", 1e-4, 1e-1), Dimension("eps", 1e-10, 1.0)), schedule="constant")
SGD_MOMENTUM_SPACE = SearchSpace("SGD + momentum, lr and momentum tuned", "sgd",
                                 (Dimension("lr", 1e-3, 1.0), Dimension("momentum", 0.7, 0.99, "one-minus-log")),
                                 schedule="constant")


def _tunables() -> list[Tunable]:
    sgd, momentum, adam = Arm("SGD", "sgd", 1e-3), Arm("SGD + momentum", "sgd", 1e-3, MOMENTUM), Arm(
        "Adam", "adam", 1e-3)
    return [
        Tunable("digits/SGD", "digits", sgd),
        Tunable("digits/SGD + momentum", "digits", momentum),
        Tunable("digits/Adam", "digits", adam),
        Tunable("digits/SGD + momentum, cosine", "digits", replace(momentum, schedule="cosine")),
        Tunable("digits/SGD + momentum, step", "digits", replace(momentum, schedule="step")),
        Tunable("digits/Adam + L2", "digits", adam, "weight_decay", (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
                lr_from="digits/Adam"),
        Tunable("digits/AdamW", "digits", Arm("AdamW", "adamw", 1e-3), "weight_decay",
                (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), lr_from="digits/Adam"),
        Tunable("digits/AdamW, cosine", "digits", Arm("AdamW", "adamw", 1e-3, schedule="cosine")),
        Tunable("digits/Schedule-Free AdamW", "digits", Arm("Schedule-Free AdamW", "schedule_free_adamw", 0.0025)),
        Tunable("digits-cnn/Adam, lr and eps", "digits-cnn", adam, "search", space=ADAM_EPS_SPACE),
        Tunable("digits-cnn/SGD + momentum, lr and momentum", "digits-cnn", momentum, "search",
                space=SGD_MOMENTUM_SPACE),
        Tunable("gpt/Adam", "gpt", adam),
        Tunable("gpt/ADOPT", "gpt", Arm("ADOPT", "adopt", 1e-3)),
        Tunable("gpt/AdamW", "gpt", Arm("AdamW", "adamw", 1e-3)),
        Tunable("gpt/Lion", "gpt", Arm("Lion", "lion", 1e-4)),
        Tunable("gpt/SGD + momentum", "gpt", momentum, find_divergence=True),
        *(Tunable(width_key(task, label), task, Arm(label, SPACES[label].optimizer, 1e-3), "search",
                  space=SPACES[label], trials=WIDTH_TRIALS) for task in WIDTH_TASKS for label in WIDTH_OPTIMIZERS),
    ]


WIDTH_TASKS = ("gpt", "gpt-128")  # the character GPT at widths 64 and 128: Muon against AdamW as models widen
WIDTH_OPTIMIZERS = ("AdamW", "Muon + AdamW")
WIDTH_TRIALS = 8


def width_key(task: str, label: str) -> str:
    """The entry of ``label``'s search (the study's search space, :data:`WIDTH_TRIALS` trials) on ``task``."""
    return f"{task}/{label}, {WIDTH_TRIALS} trials"


TUNABLES: dict[str, Tunable] = {t.key: t for t in _tunables()}


def _objective(runs: list[Any]) -> float:
    return math.inf if any(r.diverged for r in runs) else statistics.fmean(r.evals[-1][1] for r in runs)


def _grid_value(value: float) -> float:
    """``value`` to 6 significant digits, so that a grid point reached two ways is one point."""
    return float(f"{value:.6g}")


def _with(arm: Arm, parameter: str, value: float) -> Arm:
    if parameter == "lr":
        return replace(arm, lr=value)
    options = {**arm.kwargs, parameter: value}
    return replace(arm, options=tuple(options.items()))


def sweep(tunable: Tunable, tuned: dict[str, dict[str, Any]], on_run: Callable[[str], None] | None = None,
          workers: Workers | None = None) -> dict[str, Any]:
    """Run ``tunable``'s sweep; returns ``{parameter: best, "sweep": [[value, val loss or None], ...], ...}``.

    ``tuned`` holds the entries finished so far (a weight-decay sweep reads its lr there). Points that do not
    depend on each other's results are run as one batch by ``workers`` (default: one at a time, here).
    """
    task = TASKS[tunable.task]
    arm = tunable.arm
    if tunable.lr_from is not None:
        arm = replace(arm, lr=tuned[tunable.lr_from]["lr"])
    results: dict[float, float] = {}
    if tunable.space is not None:
        return _search(tunable, task, on_run, workers)

    def trials(values: list[float]) -> None:
        new = [v for v in dict.fromkeys(map(_grid_value, values)) if v not in results]
        labels = [f"{tunable.key}: {tunable.parameter}={v:.3g}" for v in new]
        arms = [_with(arm, tunable.parameter, v) for v in new]
        for value, objective in zip(new, _objectives(task, arms, labels, on_run, workers), strict=True):
            results[value] = objective

    def trial(value: float) -> float:
        trials([value])
        return results[_grid_value(value)]

    def best() -> float:
        return min(results, key=lambda v: (results[v], v))

    if tunable.parameter != "lr":
        trials(list(tunable.grid))
        entry: dict[str, Any] = {"lr": arm.lr, tunable.parameter: best()}
    else:
        exponents = list(range(-4, 5))
        trials([arm.lr * 10 ** (k / 2) for k in exponents])
        low, high = exponents[0], exponents[-1]
        for _ in range(EXTEND):  # walk off an edge the best point sits on
            if best() == _grid_value(arm.lr * 10 ** (high / 2)):
                high += 1
                trial(arm.lr * 10 ** (high / 2))
            elif best() == _grid_value(arm.lr * 10 ** (low / 2)):
                low -= 1
                trial(arm.lr * 10 ** (low / 2))
            else:
                break
        centre = best()
        trials([centre * 10 ** (k / 4) for k in (-1, 1)])
        entry = {"lr": best()}
        if tunable.find_divergence:
            value = entry["lr"]
            for _ in range(2 * EXTEND):
                value = _grid_value(value * 10 ** 0.5)
                if math.isinf(trial(value)):
                    entry["diverges_at"] = value
                    break
    entry["sweep"] = [[v, None if math.isinf(loss) else round(loss, 6)] for v, loss in sorted(results.items())]
    return entry


def _objectives(task: Any, arms: list[Arm], labels: list[str], on_run: Callable[[str], None] | None,
                workers: Workers | None) -> list[float]:
    """The tuning objective of each arm (its runs over the task's tuning seeds, made as one batch)."""
    seeds = task.tune_seeds
    requests = [Request(task.name, arm, seed, task.steps, task.eval_every) for arm in arms for seed in seeds]

    def started(i: int) -> None:
        if on_run is not None and i % len(seeds) == 0:
            on_run(labels[i // len(seeds)])

    runs = (workers or Workers()).run(requests, started)
    return [_objective(runs[j * len(seeds):(j + 1) * len(seeds)]) for j in range(len(arms))]


def _search(tunable: Tunable, task: Any, on_run: Callable[[str], None] | None, workers: Workers | None
            ) -> dict[str, Any]:
    """The best of ``tunable.trials`` Sobol points of its space: ``{"lr", "point", "trials": [[point, loss]]}``."""
    assert tunable.space is not None
    points = tunable.space.trials(tunable.trials)
    arms = [tunable.space.arm(point, task.steps) for point in points]
    labels = [f"{tunable.key}: trial {index + 1}" for index in range(len(points))]
    trials = list(zip(points, _objectives(task, arms, labels, on_run, workers), strict=True))
    point, _ = min(trials, key=lambda t: t[1])  # the first of equals: ties go to the earlier trial
    return {"lr": point["lr"], "point": point,
            "sweep": [[p, None if math.isinf(loss) else round(loss, 6)] for p, loss in trials]}


def searched_arm(entry: dict[str, Any], tunable_key: str, label: str) -> Arm:
    """The arm of a search entry's best point."""
    tunable = TUNABLES[tunable_key]
    assert tunable.space is not None
    return replace(tunable.space.arm(entry["point"], TASKS[tunable.task].steps), label=label)


def tune(keys: list[str] | None = None, on_run: Callable[[str], None] | None = None,
         tuned: dict[str, dict[str, Any]] | None = None, jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Sweep ``keys`` (default: all, in dependency order) with ``jobs`` runs at a time; returns every entry
    (``tuned`` updated)."""
    tuned = dict(tuned or {})
    with Workers(jobs) as workers:
        for key in keys or list(TUNABLES):
            tuned[key] = sweep(TUNABLES[key], tuned, on_run, workers)
    return tuned


def package_tuned_path() -> Path:
    return Path(str(resources.files("ravine.experiments").joinpath(TUNED_FILE)))


def load_tuned(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The shipped sweep results (``{key: {"lr": ..., "sweep": [...]}}``)."""
    path = path or package_tuned_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: regenerate it with `ravine compare --tune`")
    return json.loads(path.read_text())["entries"]


def write_tuned(entries: dict[str, dict[str, Any]], path: Path) -> Path:
    from ravine.files import atomic_output

    document = {
        "about": "Written by `ravine compare --tune`; the protocol is in ravine/experiments/tuning.py.",
        "tune_seeds": {name: list(task.tune_seeds) for name, task in TASKS.items()},
        "objective": "final validation loss after the task's full step budget, mean over the tuning seeds "
                     "(null: a run diverged)",
        "entries": entries,
    }
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1) + "\n")
    return path

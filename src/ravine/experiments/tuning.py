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

from ravine.experiments.search import Dimension, SearchSpace
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import Arm, train

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
    ]


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


def sweep(tunable: Tunable, tuned: dict[str, dict[str, Any]],
          on_run: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``tunable``'s sweep; returns ``{parameter: best, "sweep": [[value, val loss or None], ...], ...}``.

    ``tuned`` holds the entries finished so far (a weight-decay sweep reads its lr there).
    """
    task = TASKS[tunable.task]
    arm = tunable.arm
    if tunable.lr_from is not None:
        arm = replace(arm, lr=tuned[tunable.lr_from]["lr"])
    results: dict[float, float] = {}

    def trial(value: float) -> float:
        value = _grid_value(value)
        if value not in results:
            if on_run is not None:
                on_run(f"{tunable.key}: {tunable.parameter}={value:.3g}")
            candidate = _with(arm, tunable.parameter, value)
            results[value] = _objective([train(task, candidate, seed, task.steps, task.eval_every)
                                         for seed in task.tune_seeds])
        return results[value]

    def best() -> float:
        return min(results, key=lambda v: (results[v], v))

    if tunable.space is not None:
        return _search(tunable, task, on_run)
    if tunable.parameter != "lr":
        for value in tunable.grid:
            trial(value)
        entry: dict[str, Any] = {"lr": arm.lr, tunable.parameter: best()}
    else:
        exponents = list(range(-4, 5))
        for k in exponents:
            trial(arm.lr * 10 ** (k / 2))
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
        for k in (-1, 1):
            trial(centre * 10 ** (k / 4))
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


def _search(tunable: Tunable, task: Any, on_run: Callable[[str], None] | None) -> dict[str, Any]:
    """The best of ``tunable.trials`` Sobol points of its space: ``{"lr", "point", "trials": [[point, loss]]}``."""
    assert tunable.space is not None
    trials = []
    for index, point in enumerate(tunable.space.trials(tunable.trials)):
        if on_run is not None:
            on_run(f"{tunable.key}: trial {index + 1}")
        arm = tunable.space.arm(point, task.steps)
        trials.append((point, _objective([train(task, arm, seed, task.steps, task.eval_every)
                                          for seed in task.tune_seeds])))
    point, _ = min(trials, key=lambda t: t[1])  # the first of equals: ties go to the earlier trial
    return {"lr": point["lr"], "point": point,
            "sweep": [[p, None if math.isinf(loss) else round(loss, 6)] for p, loss in trials]}


def searched_arm(entry: dict[str, Any], tunable_key: str, label: str) -> Arm:
    """The arm of a search entry's best point."""
    tunable = TUNABLES[tunable_key]
    assert tunable.space is not None
    return replace(tunable.space.arm(entry["point"], TASKS[tunable.task].steps), label=label)


def tune(keys: list[str] | None = None, on_run: Callable[[str], None] | None = None,
         tuned: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Sweep ``keys`` (default: all, in dependency order); returns every entry (``tuned`` updated)."""
    tuned = dict(tuned or {})
    for key in keys or list(TUNABLES):
        tuned[key] = sweep(TUNABLES[key], tuned, on_run)
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

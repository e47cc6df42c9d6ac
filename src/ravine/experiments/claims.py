"""Empirical claims about optimizers, each as an experiment with its criterion fixed up front.

A claim names its task, the arms it runs (their lrs come from the shipped sweep, :mod:`.tuning`, or from a
rule stated in the criterion — never picked by hand), the columns of its table, and the checks that decide it.
Every check pairs runs by seed and decides with :mod:`.stats`: holds / does not hold / inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ravine.experiments import stats
from ravine.experiments.metrics import early_instability, mean_train_loss, steps_to_accuracy, steps_to_stop
from ravine.experiments.tasks import TASKS
from ravine.experiments.train import STOPPING_POINTS, Arm, Run
from ravine.experiments.tuning import (
    SEARCH_TRIALS,
    WIDTH_OPTIMIZERS,
    WIDTH_TASKS,
    WIDTH_TRIALS,
    searched_arm,
    width_key,
)

Tuned = dict[str, dict[str, Any]]
Runs = dict[str, list[Run]]  # arm label -> runs ordered by seed


@dataclass(frozen=True)
class Column:
    """A table column: a number read off each run, shown as mean ± std over the seeds."""

    name: str
    value: Callable[[Run], float]
    digits: int = 4


@dataclass(frozen=True)
class Check:
    text: str
    verdict: str


@dataclass(frozen=True)
class Claim:
    number: int
    key: str
    statement: str
    task: str
    criterion: str
    arms: Callable[[Tuned], list[Arm]]
    checks: Callable[[Runs, Tuned], list[Check]]
    columns: tuple[Column, ...]

    def verdict(self, checks: list[Check]) -> str:
        return stats.combine([c.verdict for c in checks])


TEST_LOSS = Column("test loss", lambda r: r.test_loss)
TEST_ACCURACY = Column("test accuracy %", lambda r: 100 * r.test_accuracy, 2)
MEAN_TRAIN_LOSS = Column("mean train loss", mean_train_loss)
INSTABILITY = Column("early instability (nats)", early_instability, 3)
STATE = Column("state bytes/param", lambda r: r.state_bytes / r.parameters, 3)


def _values(runs: list[Run], value: Callable[[Run], float]) -> list[float]:
    return [value(r) for r in runs]


def _log(value: Callable[[Run], float]) -> Callable[[Run], float]:
    return lambda r: math.log(value(r))


def _compare(runs: Runs, a: str, b: str, value: Callable[[Run], float], decide: Callable[..., str],
             *bound: float, what: str) -> Check:
    """Check ``decide(paired difference value(a) − value(b), *bound)``, described as ``what``."""
    diff = stats.paired_difference(_values(runs[a], value), _values(runs[b], value))
    verdict = decide(diff, *bound)
    return Check(f"{what}: {a} − {b} = {diff} → {verdict}", verdict)


def _arm(label: str, optimizer: str, tuned: Tuned, key: str, *options: tuple[str, Any], **fields: Any) -> Arm:
    return Arm(label, optimizer, tuned[key]["lr"], tuple(options), **fields)


def _tuned_adamw(tuned: Tuned, task: str, label: str = "AdamW") -> Arm:
    """AdamW at its tuned lr on ``task`` (on the digits with its swept weight decay, on the GPT at the package
    default): one arm for claims 5, 8, 10 and 11, so the runs they share are run once."""
    if task == "gpt":
        return _arm(label, "adamw", tuned, "gpt/AdamW")
    entry = tuned["digits/AdamW"]
    return Arm(label, "adamw", entry["lr"], (("weight_decay", entry["weight_decay"]),))


MOMENTUM = ("momentum", 0.9)
EMA_MOMENTUM = (MOMENTUM, ("dampening", 0.9))  # v ← βv + (1 − β)g: the tutorial (EWA) form of momentum


# 1 ------------------------------------------------------------------------------------------------------
def _claim1_arms(tuned: Tuned) -> list[Arm]:
    return [_arm("SGD", "sgd", tuned, "digits/SGD"),
            _arm("SGD + momentum", "sgd", tuned, "digits/SGD + momentum", MOMENTUM),
            _arm("Adam", "adam", tuned, "digits/Adam")]


def _claim1_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "Adam", other, mean_train_loss, stats.decide_below, what="mean train loss")
            for other in ("SGD", "SGD + momentum")]


# 2 ------------------------------------------------------------------------------------------------------
ACCURACY_MARGIN = 1.0  # percentage points


def _claim2_arms(tuned: Tuned) -> list[Arm]:
    return [*_claim1_arms(tuned)[1:],
            _arm("SGD + momentum, cosine", "sgd", tuned, "digits/SGD + momentum, cosine", MOMENTUM,
                 schedule="cosine"),
            _arm("SGD + momentum, step", "sgd", tuned, "digits/SGD + momentum, step", MOMENTUM, schedule="step")]


def _claim2_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, decayed, "Adam", TEST_ACCURACY.value, stats.decide_above, -ACCURACY_MARGIN,
                     what=f"test accuracy (points; holds above −{ACCURACY_MARGIN:g})")
            for decayed in ("SGD + momentum, cosine", "SGD + momentum, step")]


# 3 ------------------------------------------------------------------------------------------------------
LOW_LR_FACTOR = 10
LITTLE = 0.10  # "little difference": test losses within 10% of each other


def _claim3_arms(tuned: Tuned) -> list[Arm]:
    lr = tuned["digits/SGD"]["lr"]
    low = lr / LOW_LR_FACTOR
    return [Arm("SGD, low lr", "sgd", low), Arm("SGD + EMA momentum, low lr", "sgd", low, EMA_MOMENTUM),
            Arm("SGD + torch momentum, low lr", "sgd", low, (MOMENTUM,)),
            Arm("SGD, tuned lr", "sgd", lr), Arm("SGD + EMA momentum, tuned lr", "sgd", lr, EMA_MOMENTUM)]


def _claim3_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "SGD + EMA momentum, low lr", "SGD, low lr", _log(TEST_LOSS.value),
                     stats.decide_within, math.log(1 + LITTLE),
                     what=f"ln test loss (holds inside ±ln {1 + LITTLE:g})")]


# 4 ------------------------------------------------------------------------------------------------------
def _claim4_arms(tuned: Tuned) -> list[Arm]:
    return [_arm("Adam", "adam", tuned, "gpt/Adam"), _arm("ADOPT", "adopt", tuned, "gpt/ADOPT")]


def _claim4_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "ADOPT", "Adam", TEST_LOSS.value, stats.decide_below, what="test loss")]


# 5 ------------------------------------------------------------------------------------------------------
COMPARABLE = 0.05  # "comparable loss": Lion's test loss at most 5% above AdamW's
LR_RATIO = (3.0, 10.0)


def _claim5_arms(tuned: Tuned) -> list[Arm]:
    return [_tuned_adamw(tuned, "gpt"), _arm("Lion", "lion", tuned, "gpt/Lion")]


def _claim5_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    state = statistics.fmean(r.state_bytes for r in runs["Lion"]) / statistics.fmean(
        r.state_bytes for r in runs["AdamW"])
    state_verdict = stats.HOLDS if abs(state - 0.5) <= 0.01 else stats.FAILS
    ratio = tuned["gpt/AdamW"]["lr"] / tuned["gpt/Lion"]["lr"]
    ratio_verdict = stats.HOLDS if LR_RATIO[0] <= ratio <= LR_RATIO[1] * 1.0001 else stats.FAILS
    return [
        Check(f"state bytes Lion / AdamW = {state:.4f} (holds within 0.5 ± 0.01) → {state_verdict}",
              state_verdict),
        Check(f"tuned lr AdamW / Lion = {ratio:.3g} (holds in [{LR_RATIO[0]:g}, {LR_RATIO[1]:g}]; one sweep, "
              f"no interval) → {ratio_verdict}", ratio_verdict),
        _compare(runs, "Lion", "AdamW", _log(TEST_LOSS.value), stats.decide_below, math.log(1 + COMPARABLE),
                 what=f"ln test loss (holds below ln {1 + COMPARABLE:g})"),
    ]


# 6 ------------------------------------------------------------------------------------------------------
HIGH_LR_FACTOR = 10


def _claim6_arms(tuned: Tuned) -> list[Arm]:
    high = HIGH_LR_FACTOR * tuned["gpt/Adam"]["lr"]
    return [Arm("Adam, no warmup", "adam", high, schedule="cosine"),
            Arm("Adam, linear warmup", "adam", high, schedule="warmup_cosine")]


def _claim6_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "Adam, linear warmup", "Adam, no warmup", early_instability, stats.decide_below,
                     what="early instability")]


# 7 ------------------------------------------------------------------------------------------------------
MAX_NORM = 1.0


def _claim7_arms(tuned: Tuned) -> list[Arm]:
    entry = tuned["gpt/SGD + momentum"]
    if "diverges_at" not in entry:
        raise ValueError("the sweep of gpt/SGD + momentum found no lr at which it diverges; rerun --tune")
    unclipped = Arm("SGD + momentum, unclipped", "sgd", entry["diverges_at"], (MOMENTUM,))
    return [unclipped, replace(unclipped, label=f"SGD + momentum, clipped at {MAX_NORM:g}", clip=MAX_NORM)]


def _claim7_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    a, b = runs.values()
    exploded, survived = sum(r.diverged for r in a), sum(not r.diverged for r in b)
    premise = stats.HOLDS if exploded else stats.INCONCLUSIVE
    verdict = stats.HOLDS if survived == len(b) else stats.FAILS
    return [Check(f"premise: the unclipped run diverged in {exploded} of {len(a)} seeds (needs ≥ 1) → {premise}",
                  premise),
            Check(f"the clipped run finished without diverging in {survived} of {len(b)} seeds (holds if all) "
                  f"→ {verdict}", verdict)]


# 8 ------------------------------------------------------------------------------------------------------
def _claim8_arms(tuned: Tuned) -> list[Arm]:
    l2 = tuned["digits/Adam + L2"]
    return [Arm("Adam + L2", "adam", l2["lr"], (("weight_decay", l2["weight_decay"]),)),
            _tuned_adamw(tuned, "digits")]


def _claim8_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "AdamW", "Adam + L2", TEST_ACCURACY.value, stats.decide_above,
                     what="test accuracy (points)")]


# 9 ------------------------------------------------------------------------------------------------------
LR_GRID = tuple(10 ** (k / 2) for k in range(-8, -1))  # 1e-4 … 1e-1, half decades
NOT_WORSE = 0.05


def _claim9_arms(tuned: Tuned) -> list[Arm]:
    return [Arm(f"{name}, lr {lr:.2g}", optimizer, lr) for name, optimizer in
            (("Adam", "adam"), ("Lookahead(Adam)", "lookahead_adam")) for lr in LR_GRID]


def grid_labels(runs: Runs, name: str) -> list[str]:
    """The labels of ``name``'s runs on the lr grid (``"Adam, lr 0.001"``, ...), in grid order."""
    return [label for label in runs if label.startswith(f"{name}, lr ")]


def best_grid_label(runs: Runs, name: str) -> str:
    """The grid lr with the lowest mean final validation loss (chosen on val, judged on test)."""
    return min(grid_labels(runs, name), key=lambda label: statistics.fmean(
        math.inf if r.diverged else r.evals[-1][1] for r in runs[label]))


def lr_spread(runs: list[list[Run]]) -> list[float]:
    """Per seed: the standard deviation over the lr grid of ln(test loss) — how much the lr matters."""
    return [statistics.stdev(math.log(per_lr[seed].test_loss) for per_lr in runs) for seed in range(len(runs[0]))]


def _claim9_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    best_adam, best_lookahead = best_grid_label(runs, "Adam"), best_grid_label(runs, "Lookahead(Adam)")
    best = {"Lookahead(Adam) at its best lr": runs[best_lookahead], "Adam at its best lr": runs[best_adam]}
    good = _compare(best, "Lookahead(Adam) at its best lr", "Adam at its best lr", _log(TEST_LOSS.value),
                    stats.decide_below, math.log(1 + NOT_WORSE),
                    what=f"ln test loss (holds below ln {1 + NOT_WORSE:g}; best grid lr by validation loss: "
                         f"Lookahead {best_lookahead.split()[-1]}, Adam {best_adam.split()[-1]})")
    spread = {name: lr_spread([runs[label] for label in grid_labels(runs, name)])
              for name in ("Lookahead(Adam)", "Adam")}
    diff = stats.paired_difference(spread["Lookahead(Adam)"], spread["Adam"])
    verdict = stats.decide_below(diff)
    return [good, Check(f"spread over the lr grid (std of ln test loss): Lookahead(Adam) − Adam = {diff} → "
                        f"{verdict}", verdict)]


# 10, 11 -------------------------------------------------------------------------------------------------
WITHIN = 0.02  # "within 2% of float32 AdamW": the saver's test loss at most 2% above AdamW's
IN_BACKWARD, INT8, KAHAN = ("step_in_backward", True), ("state_dtype", "int8"), ("kahan_sum", True)
SAVERS = (  # (label, AdamW options added, parameter dtype): the configurations `ravine bench memory` measures
    ("+ step in backward", (IN_BACKWARD,), "float32"),
    ("+ int8 state", (INT8,), "float32"),
    ("+ step in backward + int8 state", (IN_BACKWARD, INT8), "float32"),
    ("bf16 parameters + Kahan", (KAHAN,), "bfloat16"),
    ("all three", (IN_BACKWARD, INT8, KAHAN), "bfloat16"),
)
UNCOMPENSATED = "bf16 parameters, no Kahan"  # shown for contrast, not judged


def _memory_arms(task: str) -> Callable[[Tuned], list[Arm]]:
    def arms(tuned: Tuned) -> list[Arm]:
        base = _tuned_adamw(tuned, task, "AdamW, float32")
        savers = [replace(base, label=label, options=base.options + options, dtype=dtype)
                  for label, options, dtype in SAVERS]
        return [base, *savers, replace(base, label=UNCOMPENSATED, dtype="bfloat16")]
    return arms


def _memory_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    base = next(iter(runs))
    return [_compare(runs, label, base, _log(TEST_LOSS.value), stats.decide_below, math.log(1 + WITHIN),
                     what=f"ln test loss (holds below ln {1 + WITHIN:g})") for label, _, _ in SAVERS]


def _memory_claim(number: int, task: str, title: str) -> Claim:
    return Claim(
        number, f"saving-memory-{task}",
        f"Step in backward, 8-bit optimizer state and bf16 parameters with Kahan summation train the {title} "
        f"to within 2% of float32 AdamW's loss.", task,
        f"AdamW at its tuned lr{'' if task == 'gpt' else ' and weight decay'} against itself with each of "
        f"ravine's memory savers, alone and together: the update applied as each gradient arrives "
        f"(`step_in_backward`, after LOMO: Lv et al. 2023), blockwise 8-bit moments (`state_dtype=\"int8\"`, "
        f"after Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization) and bfloat16 parameters "
        f"with Kahan-compensated updates (`kahan_sum`, after Zamirai et al. 2020, Revisiting BFloat16 "
        f"Training). Holds if, for every saver, its test loss is at most {WITHIN:.0%} above float32 AdamW's "
        f"(95% interval of the paired difference of ln test loss below ln {1 + WITHIN:g}); does not hold if "
        f"any interval lies wholly at or above it. bf16 parameters without compensation are shown for contrast.",
        _memory_arms(task), _memory_checks, (TEST_LOSS, TEST_ACCURACY, STATE))


# 12 -----------------------------------------------------------------------------------------------------
AT_LEAST_AS_GOOD = 0.02  # "at least as good": at most 2% above


def _claim12_arms(tuned: Tuned) -> list[Arm]:
    cosine = _arm("AdamW, cosine", "adamw", tuned, "digits/AdamW, cosine", schedule="cosine")
    free = _arm("Schedule-Free AdamW", "schedule_free_adamw", tuned, "digits/Schedule-Free AdamW")
    return [replace(arm, label=f"{arm.label}, {f:g} of the steps", budget=f)
            for f in STOPPING_POINTS for arm in (cosine, free)]


def _claim12_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, f"Schedule-Free AdamW, {f:g} of the steps", f"AdamW, cosine, {f:g} of the steps",
                     _log(TEST_LOSS.value), stats.decide_below, math.log(1 + AT_LEAST_AS_GOOD),
                     what=f"{f:g} of the steps: ln test loss (holds below ln {1 + AT_LEAST_AS_GOOD:g})")
            for f in STOPPING_POINTS]


# 13 -----------------------------------------------------------------------------------------------------
def _claim13_arms(tuned: Tuned) -> list[Arm]:
    adam, sgd = "digits-cnn/Adam, lr and eps", "digits-cnn/SGD + momentum, lr and momentum"
    return [searched_arm(tuned[adam], adam, "Adam, lr and ε tuned"),
            searched_arm(tuned[sgd], sgd, "SGD + momentum, lr and momentum tuned")]


def _claim13_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    return [_compare(runs, "Adam, lr and ε tuned", "SGD + momentum, lr and momentum tuned", _log(TEST_LOSS.value),
                     stats.decide_below, math.log(1 + AT_LEAST_AS_GOOD),
                     what=f"ln test loss (holds below ln {1 + AT_LEAST_AS_GOOD:g})")]


# 14 -----------------------------------------------------------------------------------------------------
DEFAULT_OPTIMIZERS = (("Adam", "adam"), ("AdamW", "adamw"), ("RMSprop", "rmsprop"), ("Adagrad", "adagrad"),
                      ("Lion", "lion"))
ABOUT_AS_GOOD = 0.05


def default_lr(optimizer: str) -> float:
    """The lr ravine's ``optimizer`` uses when none is given (the one its paper or torch uses)."""
    import inspect

    from ravine.registry import ALGORITHMS

    return float(inspect.signature(ALGORITHMS[optimizer]).parameters["lr"].default)


def _claim14_arms(tuned: Tuned) -> list[Arm]:
    defaults = [Arm(f"{name}, default lr {default_lr(key):g}", key, default_lr(key)) for name, key in
                DEFAULT_OPTIMIZERS]
    return [*defaults, _arm("Adam, tuned lr", "adam", tuned, "digits/Adam")]


def best_default_label(runs: Runs) -> str:
    """The default configuration with the lowest mean final validation loss (chosen on val, judged on test)."""
    return min((label for label in runs if ", default lr " in label), key=lambda label: statistics.fmean(
        math.inf if r.diverged else r.evals[-1][1] for r in runs[label]))


def _claim14_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    best = best_default_label(runs)
    pair = {"best default": runs[best], "Adam, tuned lr": runs["Adam, tuned lr"]}
    return [_compare(pair, "best default", "Adam, tuned lr", _log(TEST_LOSS.value), stats.decide_below,
                     math.log(1 + ABOUT_AS_GOOD),
                     what=f"ln test loss of the best default by validation loss ({best}) (holds below "
                          f"ln {1 + ABOUT_AS_GOOD:g})")]


# 15 -----------------------------------------------------------------------------------------------------
GRID_EXPONENTS = range(-4, 5)  # default lr × 10^(k/2): two decades either side of each optimizer's default


def _claim15_arms(tuned: Tuned) -> list[Arm]:
    return [Arm(f"{name}, lr {default_lr(key) * 10 ** (k / 2):.2g}", key, default_lr(key) * 10 ** (k / 2))
            for name, key in (("AdamW", "adamw"), ("Lion", "lion")) for k in GRID_EXPONENTS]


def _claim15_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    spread = {name: lr_spread([runs[label] for label in grid_labels(runs, name)]) for name in ("Lion", "AdamW")}
    diff = stats.paired_difference(spread["Lion"], spread["AdamW"])
    verdict = stats.decide_above(diff)
    diverged = {name: sum(r.diverged for label in grid_labels(runs, name) for r in runs[label])
                for name in spread}
    return [Check(f"spread over the lr grid (std of ln test loss): Lion − AdamW = {diff} → {verdict} (diverged "
                  f"runs on the grid: Lion {diverged['Lion']}, AdamW {diverged['AdamW']})", verdict)]


# 16 -----------------------------------------------------------------------------------------------------
TARGET_EVAL_EVERY = 10  # on the way to the target the validation loss is measured every 10 steps


def _width_label(label: str, task: str) -> str:
    return f"{label}, width {TASKS[task].width}"


def _claim16_arms(tuned: Tuned) -> list[Arm]:
    return [replace(searched_arm(tuned[width_key(task, label)], width_key(task, label), _width_label(label, task)),
                    task=task, until=TASKS[task].target, eval_every=TARGET_EVAL_EVERY)
            for task in WIDTH_TASKS for label in WIDTH_OPTIMIZERS]


def _claim16_checks(runs: Runs, tuned: Tuned) -> list[Check]:
    muon, adamw = WIDTH_OPTIMIZERS[1], WIDTH_OPTIMIZERS[0]
    checks, gaps = [], []
    for task in WIDTH_TASKS:
        a, b = _width_label(muon, task), _width_label(adamw, task)
        checks.append(_compare(runs, a, b, _log(steps_to_stop), stats.decide_below,
                               what=f"width {TASKS[task].width}: ln steps to target"))
        gaps.append([math.log(steps_to_stop(x) / steps_to_stop(y)) for x, y in zip(runs[a], runs[b], strict=True)])
    narrow, wide = (TASKS[task].width for task in WIDTH_TASKS)
    diff = stats.paired_difference(gaps[1], gaps[0])
    verdict = stats.decide_above(diff)
    checks.append(Check(f"the advantage shrinks with width: ln(Muon's steps / AdamW's) at width {wide} − at width "
                        f"{narrow} = {diff} → {verdict}", verdict))
    return checks


STEPS_TO_TARGET = Column("steps to target", lambda r: float(steps_to_stop(r)), 0)


def _claims() -> list[Claim]:
    digits_columns = (TEST_LOSS, TEST_ACCURACY)
    return [
        Claim(1, "adam-faster", "Adam converges faster than SGD and SGD with momentum on a simple dataset.",
              "digits",
              "Speed is the mean training loss over the run (the area under the curve). Holds if Adam's is lower "
              "than both SGD's and momentum's, each with the 95% interval of the paired difference below 0; "
              "does not hold if either interval lies wholly at or above 0.",
              _claim1_arms, _claim1_checks,
              (MEAN_TRAIN_LOSS, Column("steps to 95% val accuracy", lambda r: float(
                  steps_to_accuracy(r, 0.95) or math.nan), 0), *digits_columns)),
        Claim(2, "decay-closes-gap",
              "With learning-rate decay (step or cosine), SGD with momentum reaches about the same final result "
              "as Adam.", "digits",
              f"Final result is test accuracy. Holds if, for both cosine and step decay, SGD + momentum is not "
              f"worse than constant-lr Adam by more than {ACCURACY_MARGIN:g} point (95% interval of the paired "
              f"difference above −{ACCURACY_MARGIN:g}); does not hold if either interval lies wholly at or below "
              f"−{ACCURACY_MARGIN:g}. Momentum without decay is shown for reference.",
              _claim2_arms, _claim2_checks, digits_columns),
        Claim(3, "momentum-low-lr", "Momentum makes little difference when the learning rate is low.", "digits",
              f"The low lr is SGD's tuned lr / {LOW_LR_FACTOR}; momentum in the tutorial (EWA) form "
              f"v ← 0.9·v + 0.1·g (torch's dampening = momentum). Holds if the test losses with and without "
              f"momentum are within {LITTLE:.0%} of each other (95% interval of the paired difference of ln test "
              f"loss inside ±ln {1 + LITTLE:g}); does not hold if it lies wholly outside. The tuned-lr pair and "
              f"torch's undamped momentum (whose step is 10× larger) are shown for contrast.",
              _claim3_arms, _claim3_checks, (MEAN_TRAIN_LOSS, *digits_columns)),
        Claim(4, "adopt-beats-adam", "ADOPT trains better than Adam on a small GPT-style language model.", "gpt",
              "Holds if ADOPT's test loss is lower than Adam's, each at its tuned lr (95% interval of the paired "
              "difference below 0); does not hold if the interval lies wholly at or above 0.",
              _claim4_arms, _claim4_checks, (MEAN_TRAIN_LOSS, TEST_LOSS, TEST_ACCURACY)),
        Claim(5, "lion-half-state",
              "Lion keeps half the optimizer state of AdamW and reaches comparable loss with a 3–10× smaller lr.",
              "gpt",
              f"Three parts, all needed: the measured state bytes of Lion are 0.5 ± 0.01 of AdamW's; the swept "
              f"lrs give AdamW / Lion in [{LR_RATIO[0]:g}, {LR_RATIO[1]:g}]; at those lrs Lion's test loss is at "
              f"most {COMPARABLE:.0%} above AdamW's (95% interval of the paired difference of ln test loss below "
              f"ln {1 + COMPARABLE:g}). Each at its package's defaults otherwise (AdamW weight decay 0.01, "
              f"Lion 0).",
              _claim5_arms, _claim5_checks, (TEST_LOSS, TEST_ACCURACY, STATE)),
        Claim(6, "warmup-stability",
              "Linear warmup prevents early instability when training a transformer at a high learning rate.",
              "gpt",
              f"The high lr is {HIGH_LR_FACTOR}× Adam's tuned lr; both runs decay it by cosine, one after a "
              f"linear warmup over the first 10% of steps. Early instability is the largest rise of the smoothed "
              f"training loss above its running minimum in the first 30% of steps. Holds if warmup's is lower "
              f"(95% interval of the paired difference below 0); does not hold if it lies wholly at or above 0.",
              _claim6_arms, _claim6_checks, (INSTABILITY, TEST_LOSS, TEST_ACCURACY)),
        Claim(7, "clipping-prevents-divergence",
              "Gradient-norm clipping prevents divergence where the unclipped run explodes.", "gpt",
              f"The lr is the smallest one, walking up from SGD + momentum's tuned lr in half decades, at "
              f"which the tuning seed's unclipped run diverged (loss non-finite or above 2 × ln(vocabulary)). "
              f"Holds if the run clipped to global norm {MAX_NORM:g} diverges in none of the seeds; does not "
              f"hold if it diverges in any; inconclusive if the unclipped run diverges in none (the premise "
              f"fails).",
              _claim7_arms, _claim7_checks, (TEST_LOSS, TEST_ACCURACY)),
        Claim(8, "adamw-generalises",
              "AdamW's decoupled weight decay generalises better than Adam with L2 regularisation.", "digits",
              "Both at Adam's tuned lr, each with the weight decay its own sweep chose on the validation set "
              "(0 allowed). Holds if AdamW's test accuracy is higher (95% interval of the paired difference "
              "above 0); does not hold if it lies wholly at or below 0.",
              _claim8_arms, _claim8_checks, digits_columns),
        Claim(9, "lookahead-stable",
              "Lookahead(Adam) is at least as good as Adam and more stable across learning rates.", "digits",
              f"Both run on the lr grid {', '.join(f'{lr:.2g}' for lr in LR_GRID)}. At least as good: at each "
              f"one's best grid lr (chosen by validation loss), Lookahead's test loss is at most {NOT_WORSE:.0%} "
              f"above Adam's (95% interval of the paired difference of ln test loss below ln {1 + NOT_WORSE:g}). "
              f"More stable: the spread of ln test loss over the grid (its standard deviation, per seed) is "
              f"smaller (interval below 0). Holds if both hold; does not hold if either fails.",
              _claim9_arms, _claim9_checks, digits_columns),
        _memory_claim(10, "gpt", "character GPT"),
        _memory_claim(11, "digits", "digits MLP"),
        Claim(12, "schedule-free-anytime",
              "Schedule-Free AdamW is at least as good as cosine-decayed AdamW at every stopping point.", "digits",
              f"After Defazio et al. 2024 (The Road Less Scheduled). Each at the lr its own sweep chose on the "
              f"full budget, package defaults otherwise (AdamW weight decay 0.01; Schedule-Free weight decay 0, "
              f"no warmup). AdamW's cosine schedule is rescaled to each stopping point (it is told when training "
              f"stops); Schedule-Free's constant lr is not (a shorter run is the start of the longer one). Holds "
              f"if at each of {', '.join(f'{f:g}' for f in STOPPING_POINTS)} of the steps Schedule-Free's test "
              f"loss is at most {AT_LEAST_AS_GOOD:.0%} above AdamW's (95% interval of the paired difference of ln "
              f"test loss below ln {1 + AT_LEAST_AS_GOOD:g}); does not hold if any interval lies wholly at or "
              f"above it.", _claim12_arms, _claim12_checks, digits_columns),
        Claim(13, "adam-eps-never-loses",
              "Adam with its ε tuned never loses to SGD with momentum.", "digits-cnn",
              f"After Choi et al. 2019 (On Empirical Comparisons of Optimizers for Deep Learning): Adam contains "
              f"momentum SGD as ε grows, so with ε tuned it should be at least as good. Equal budgets: "
              f"{SEARCH_TRIALS} Sobol trials each, Adam over lr 1e-4 … 1e-1 and ε 1e-10 … 1 (log-uniform), SGD "
              f"over lr 1e-3 … 1 and momentum 0.7 … 0.99, constant lr, best by validation loss (`--tune` reruns "
              f"the search). Holds if Adam's test loss is at most {AT_LEAST_AS_GOOD:.0%} above SGD's (95% "
              f"interval of the paired difference of ln test loss below ln {1 + AT_LEAST_AS_GOOD:g}); does not "
              f"hold if it lies wholly at or above it.", _claim13_arms, _claim13_checks, digits_columns),
        Claim(14, "defaults-about-tuned",
              "Trying a few optimizers at their default settings works about as well as tuning one.", "digits",
              f"After Schmidt et al. 2021 (Descending through a Crowded Valley). The defaults: "
              f"{', '.join(name for name, _ in DEFAULT_OPTIMIZERS)}, each at its package's default lr; the best "
              f"of them is chosen by mean final validation loss and judged on test against Adam at its swept lr. "
              f"Holds if the best default's test loss is at most {ABOUT_AS_GOOD:.0%} above tuned Adam's (95% "
              f"interval of the paired difference of ln test loss below ln {1 + ABOUT_AS_GOOD:g}); does not hold "
              f"if it lies wholly at or above it.", _claim14_arms, _claim14_checks, digits_columns),
        Claim(15, "lion-less-stable",
              "Lion is less stable than AdamW: its result depends more on the learning rate.", "digits",
              "Sign methods take steps of a fixed size whatever the gradient's scale, so a wrong lr is not damped "
              "(Chen et al. 2023 recommend a 3–10× smaller lr for Lion). Both run on a grid of two decades either "
              "side of their default lr in half decades (AdamW 1e-5 … 0.1, Lion 1e-6 … 0.01) at the same budget. "
              "Holds if Lion's spread of ln test loss over its grid (standard deviation, per seed) is larger than "
              "AdamW's (95% interval of the paired difference above 0); does not hold if it lies wholly at or "
              "below 0.", _claim15_arms, _claim15_checks, digits_columns),
        Claim(16, "muon-fewer-steps",
              "Muon (with AdamW for the other parameters) reaches the target loss in fewer steps than AdamW, and "
              "its advantage shrinks as the model gets wider.", "gpt",
              f"After Jordan et al. 2024 (Muon: an optimizer for hidden layers), Liu et al. 2025 (Muon is "
              f"Scalable for LLM Training: about 2× AdamW's compute efficiency) and Wen et al. 2025 "
              f"(Fantastic Pretraining Optimizers: speedups over AdamW shrink with scale, 1.4× at 0.1 B "
              f"parameters to 1.1× at 1.2 B). The character GPT at widths "
              f"{' and '.join(str(TASKS[t].width) for t in WIDTH_TASKS)} "
              f"(same data, budget and target). Equal tuning budgets: on each width each optimizer gets the first "
              f"{WIDTH_TRIALS} Sobol trials of its search space in `ravine compare --study` (AdamW over lr, β₁, "
              f"β₂, ε, weight decay, warmup; Muon + AdamW over Muon's lr and momentum, AdamW's lr, weight decay, "
              f"warmup; hidden matrices to Muon by `ravine.muon_param_groups`), best by final validation loss. "
              f"Each run stops at the first evaluation (every {TARGET_EVAL_EVERY} steps) whose validation loss is "
              f"at or below the target {TASKS[WIDTH_TASKS[0]].target:g}; a run that never gets there counts as "
              f"twice the budget. Three parts, all needed: at each width Muon's steps to the target are fewer "
              f"(95% interval of the paired difference of ln steps below 0), and the log ratio of Muon's steps to "
              f"AdamW's is larger (closer to 0) at the wider model (interval of its paired difference above 0). "
              f"Does not hold if any part's interval lies wholly on the other side.",
              _claim16_arms, _claim16_checks, (STEPS_TO_TARGET, STATE)),
    ]


CLAIMS: dict[str, Claim] = {claim.key: claim for claim in _claims()}


def select(names: list[str]) -> list[Claim]:
    """Claims by key or number (all when ``names`` is empty), in their order."""
    if not names:
        return list(CLAIMS.values())
    by_number = {str(claim.number): claim for claim in CLAIMS.values()}
    chosen = []
    for name in names:
        claim = CLAIMS.get(name) or by_number.get(name)
        if claim is None:
            raise ValueError(f"Invalid claim: {name!r} (choose from 1–{len(CLAIMS)} or {', '.join(CLAIMS)})")
        chosen.append(claim)
    return sorted({claim.key: claim for claim in chosen}.values(), key=lambda c: c.number)

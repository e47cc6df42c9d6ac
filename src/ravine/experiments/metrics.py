"""Numbers read off a finished run: the quantities the claims' criteria are stated in."""

from __future__ import annotations

import statistics

from ravine.ewa import EWA
from ravine.experiments.train import Run

SMOOTHING = 0.9  # β of the bias-corrected EWA that smooths training-loss curves


def smoothed(values: list[float], beta: float = SMOOTHING) -> list[float]:
    """The exponentially weighted average with bias correction, after each value."""
    return EWA(beta).smooth(values)


def train_curve(run: Run) -> list[float]:
    """Training loss per step over the whole budget; after a divergence, the divergence threshold (a run that
    stopped at its target ends where it stopped)."""
    if not run.diverged:
        return run.train_loss
    return run.train_loss + [run.divergence_limit] * (run.steps - len(run.train_loss))


def mean_train_loss(run: Run) -> float:
    """The area under the training-loss curve divided by the steps: low when the loss falls early."""
    return statistics.fmean(train_curve(run))


def early_instability(run: Run, fraction: float = 0.3) -> float:
    """The largest rise of the smoothed training loss above its running minimum in the first ``fraction`` of
    the steps (nats): 0 for a loss that only falls; a diverged run rises to the divergence threshold."""
    curve = smoothed(train_curve(run)[: max(1, round(fraction * run.steps))])
    lowest, rise = curve[0], 0.0
    for value in curve:
        lowest = min(lowest, value)
        rise = max(rise, value - lowest)
    return rise


def steps_to_accuracy(run: Run, target: float) -> int | None:
    """The first evaluation step whose validation accuracy reaches ``target`` (None if it never does)."""
    return next((step for step, _, accuracy in run.evals if accuracy >= target), None)


def steps_to_stop(run: Run) -> int:
    """The step at which a run reached its arm's target (``Arm.until``) and stopped; a run that never did
    (diverged, or still above the target at the end of its budget) counts as twice its budget."""
    return run.stopped_at if run.stopped_at is not None else 2 * run.steps

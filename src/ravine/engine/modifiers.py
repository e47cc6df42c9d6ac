"""Modifiers: one idea applied to any momentum optimizer offering the point it changes, with no class per pair.

A modifier is a set of group options (so it saves with the state dict and runs on every path, the fused one
included) and a few lines of math that an algorithm calls at a named point of its update:

* ``cautious`` (Liang et al., 2024, "Cautious Optimizers: Improving Training with One Line of Code",
  arXiv:2411.16085) changes the **update**: coordinates where the update's sign disagrees with the gradient's
  are zeroed, and the rest rescaled by ``n / (kept + 1)`` so the update keeps its size.
* AdEMAMix (Pagliardini, Ablin & Grangier, 2024, "The AdEMAMix Optimizer: Better, Faster, Older",
  arXiv:2409.03137) changes the **momentum**: a second, slow EMA ``m₂ ← β₃·m₂ + (1 − β₃)·g`` is added to the
  bias-corrected first moment, ``m̂₁ + α·m₂``, with α and β₃ warmed up as in the paper's Algorithm 1.

An algorithm lists the points it offers in ``modifier_points`` (``"update"``, ``"momentum"``); the engine then
accepts the options of the modifiers that use them and refuses the others with an error naming the algorithm.
"""

from __future__ import annotations

import math
from typing import Any

from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_non_negative, check_numbers, check_unit_interval

# option → default, for each modifier, and the point of an update it changes.
MODIFIERS: dict[str, dict[str, Any]] = {
    "cautious": {"cautious": False},
    "ademamix": {"ademamix_alpha": 0.0, "ademamix_beta3": 0.9999, "ademamix_alpha_warmup": None,
                 "ademamix_beta3_warmup": None},
}
POINTS = {"cautious": "update", "ademamix": "momentum"}
REDUCES = {"cautious"}  # modifiers whose math takes a whole-tensor reduction (the count of kept coordinates)
MODIFIER_OPTIONS: dict[str, Any] = {k: v for options in MODIFIERS.values() for k, v in options.items()}


def supported_options(points: tuple[str, ...]) -> dict[str, Any]:
    """The modifier options (with defaults) an algorithm offering ``points`` accepts."""
    return {k: v for name, options in MODIFIERS.items() if POINTS[name] in points for k, v in options.items()}


def check_modifier_options(algorithm: str, points: tuple[str, ...], options: dict[str, Any]) -> None:
    """Refuse modifier options the algorithm cannot take, and bad values, naming the option."""
    for name, modifier_options in MODIFIERS.items():
        given = [k for k in modifier_options if k in options and options[k] != modifier_options[k]]
        if given and POINTS[name] not in points:
            users = "Adam, AdamW, AdEMAMix" if name == "ademamix" else "Adam, AdamW, AdEMAMix, Lion, SGD"
            raise ValueError(
                f"{algorithm} does not take {given[0]}: {name} modifies an optimizer's {POINTS[name]}, which "
                f"{algorithm} does not expose (it composes with {users})"
            )
    if "ademamix_alpha" in options:
        check_numbers(ademamix_alpha=options["ademamix_alpha"], ademamix_beta3=options["ademamix_beta3"])
        check_non_negative("ademamix_alpha", options["ademamix_alpha"])
        check_unit_interval("ademamix_beta3", options["ademamix_beta3"], closed=False)
        for key in ("ademamix_alpha_warmup", "ademamix_beta3_warmup"):
            if options[key] is not None:
                check_numbers(**{key: options[key]})
                if not options[key] > 0:
                    raise ValueError(f"Invalid {key}: {options[key]} (a number of steps > 0, or None)")


def modifiers_reduce(group: Any) -> bool:
    """Whether a group turns on a modifier whose math takes whole-tensor reductions."""
    return any(group.get(name) for name in REDUCES)


# ---- cautious --------------------------------------------------------------------------------------------------
def cautious(update: Maths, grad: Maths) -> Maths:
    """``update`` masked where its sign disagrees with ``grad``'s, rescaled by ``n / (kept + 1)``, in place.

    ``n / (kept + 1)`` is computed as torch computes ``n / tensor`` (a reciprocal, then a product), so the
    per-tensor path equals the authors' ``mask * (mask.numel() / (mask.sum() + 1))``.
    """
    mask = update.mul(grad).sign_().clamp_min_(0)  # 1 where update·grad > 0, else 0
    scale = mask.sum().add_(1).reciprocal_().mul_(mask.numel())
    return update.mul_(mask.mul_(scale))


# ---- AdEMAMix --------------------------------------------------------------------------------------------------
def ademamix_scalars(hp: Any, beta1: float) -> dict[str, float]:
    """α(t) and β₃(t) of step t (the paper's Algorithm 1): α linear from 0, β₃ linear in half-life from β₁."""
    alpha, beta3, t = hp.ademamix_alpha, hp.ademamix_beta3, hp.step
    alpha_warmup, beta3_warmup = hp.ademamix_alpha_warmup, hp.ademamix_beta3_warmup
    alpha_t = alpha * t / alpha_warmup if alpha_warmup is not None and t < alpha_warmup else alpha
    beta3_t = beta3
    if beta3_warmup is not None and t < beta3_warmup:
        def half_life(beta: float) -> float:
            return math.log(0.5) / math.log(beta + 1e-8) - 1

        a = t / beta3_warmup
        beta3_t = math.pow(0.5, 1 / ((1 - a) * half_life(beta1) + a * half_life(beta3) + 1))
    return {"ademamix_alpha_t": alpha_t, "ademamix_beta3_t": beta3_t}


def ademamix_active(hp: Any) -> bool:
    return getattr(hp, "ademamix_alpha", 0.0) != 0


def mix_slow_momentum(m_hat: Maths, grad: Maths, state: Any, hp: Any) -> Maths:
    """``m̂₁ + α(t)·m₂`` after the slow EMA's step ``m₂ ← β₃(t)·m₂ + (1 − β₃(t))·g`` (in place on ``m̂₁``)."""
    beta3 = hp.ademamix_beta3_t
    state.exp_avg_slow.mul_(beta3).add_(grad, alpha=1 - beta3)
    return m_hat.add_(state.exp_avg_slow.mul(hp.ademamix_alpha_t))

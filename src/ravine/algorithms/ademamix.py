"""AdEMAMix (Pagliardini, Ablin & Grangier, 2024): AdamW plus a slow EMA of the gradients."""

from __future__ import annotations

from torch import Tensor

from ravine.algorithms.adam import AdamW
from ravine.engine.optimizer import ParamsT


class AdEMAMix(AdamW):
    r"""AdEMAMix, with the signature of the authors' PyTorch reference (apple/ml-ademamix).

    AdamW whose first moment is mixed with a second, slow EMA (the paper's Algorithm 1)::

        m₁ ← β₁·m₁ + (1 − β₁)·g;   m₂ ← β₃(t)·m₂ + (1 − β₃(t))·g;   ν ← β₂·ν + (1 − β₂)·g²
        p  ← p·(1 − lr·λ) − lr · (m₁ / (1 − β₁ᵗ) + α(t)·m₂) / (√(ν / (1 − β₂ᵗ)) + ε)

    α(t) rises linearly from 0 to ``alpha`` over ``alpha_warmup`` steps and β₃(t) from β₁ to ``betas[2]``
    over ``beta3_warmup`` steps, linearly in half-life; without warmups they are constant. The slow EMA
    remembers gradients from ~10⁴ steps back (β₃ = 0.9999), which the paper finds makes a 1.3B model reach
    AdamW's loss with about half the tokens; use warmups as long as the run when α or β₃ is large.

    This is :class:`AdamW` with the ``ademamix_*`` options set, so the same modifier composes with Adam and
    with ``cautious=True`` (:mod:`ravine.engine.modifiers`) and runs on every path, ``fused=True`` included.
    Paper: "The AdEMAMix Optimizer: Better, Faster, Older", arXiv:2409.03137. State: ``step``, ``exp_avg``,
    ``exp_avg_sq``, ``exp_avg_slow``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 2.0,
        beta3_warmup: int | None = None,
        alpha_warmup: int | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 3:
            raise ValueError(f"Invalid betas: {betas!r} (AdEMAMix takes three: β₁, β₂ and the slow EMA's β₃)")
        super().__init__(
            params, lr, (betas[0], betas[1]), eps, weight_decay, ademamix_alpha=alpha, ademamix_beta3=betas[2],
            ademamix_alpha_warmup=alpha_warmup, ademamix_beta3_warmup=beta3_warmup,
        )

"""Lookahead (Zhang et al., 2019): k steps forward, one step back, around any torch optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ravine.engine.eager_only import eager_only
from ravine.engine.validation import check_unit_interval
from ravine.weight_averages import WeightAverages

SLOW_KEY = "slow_param"
STEP_KEY = "lookahead_step"


class Lookahead(WeightAverages):
    r"""Wrap any :class:`torch.optim.Optimizer` (the *fast* optimizer) with Lookahead's slow weights.

    Algorithm (φ the slow weights, θ the fast ones, φ₀ = θ₀)::

        every step:       θ ← inner_step(θ)
        every k-th step:  φ ← φ + α·(θ − φ);  θ ← φ

    Paper: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.

    ``param_groups``, ``state``, ``zero_grad``, ``add_param_group`` and LR schedulers act on the wrapped
    optimizer. Unlike the reference implementation, the slow weights (``state_dict()['state'][i]
    ['slow_param']``) and the step counter (``param_groups[*]['lookahead_step']``, kept in the inner
    optimizer's groups) are saved, so a resumed run continues bit-identically — also through
    ZeroRedundancyOptimizer and DCP; the rest of the state dict is the inner optimizer's own. Around a ravine
    optimizer the synchronisation happens inside its k-th step — on the fused path in the step's own kernel,
    so the other k − 1 steps cost nothing extra and the k-th reads and writes the slow weights once.

    Args:
        optimizer: the fast optimizer.
        k: synchronise every ``k`` steps (≥ 1).
        alpha: slow-weight step size in [0, 1].
    """

    average_key, counter_key, options = SLOW_KEY, STEP_KEY, ("k", "alpha")

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Invalid k value: {k!r} (k must be an integer >= 1)")
        check_unit_interval("alpha", alpha)
        super().__init__(optimizer, k=k, alpha=alpha)

    @property
    def lookahead_step(self) -> int:
        """Steps taken (skipped non-finite steps excluded); a sync happens whenever it reaches a multiple of k."""
        return self.steps_taken

    @lookahead_step.setter
    def lookahead_step(self, value: int) -> None:
        self.steps_taken = value

    @property
    def slow_params(self) -> dict[Tensor, Tensor]:
        """The slow weights φ, by parameter."""
        return self.averages

    @eager_only
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One fast step; every k-th call also pulls the slow weights towards the fast ones and resets θ."""
        self._before_step()
        sync = (self.steps_taken + 1) % self.k == 0
        loss, taken, folded = self._inner_step(closure, self.alpha if sync else None, write_back=True)
        if not taken:
            return loss  # the inner optimizer skipped a non-finite step: it does not count towards k
        self.steps_taken += 1
        if sync and not folded:
            self.synchronize()
        return loss

    def _before_step(self) -> None:
        """φ₀ = θ₀ for parameters without slow weights, before their first inner update (which, with
        ``step_in_backward``, begins inside backward: the inner optimizer calls this then)."""
        self._adopt_loaded_averages()
        for p in self._params():
            if p not in self.averages:
                self.averages[p] = p.detach().clone()

    def synchronize(self) -> None:
        """φ ← φ + α·(θ − φ); θ ← φ, for every parameter (multi-tensor per device, dtype and layout).

        Called after every k-th step of an inner optimizer that is not a ravine one; a ravine optimizer does the
        same inside its k-th step (:meth:`ravine.Optimizer.fold_average`: in the fused kernel on the fused path).
        """
        self._average_now(self.alpha, write_back=True)

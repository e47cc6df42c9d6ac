"""An exponential moving average of the weights, kept by any optimizer's step (the EMA of AveragedModel)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from ravine.engine.eager_only import eager_only
from ravine.engine.validation import check_unit_interval
from ravine.weight_averages import WeightAverages

EMA_KEY = "ema_param"
COUNT_KEY = "ema_count"


class WeightEMA(WeightAverages):
    r"""Wrap any :class:`torch.optim.Optimizer` and keep an exponential moving average of its parameters.

    After each step (θ the parameters just updated)::

        first step:   θ̄ ← θ
        later steps:  θ̄ ← θ̄ + (1 − decay)·(θ − θ̄)        (torch.lerp)

    This is :class:`torch.optim.swa_utils.AveragedModel` with ``multi_avg_fn=get_ema_multi_avg_fn(decay)``
    and ``update_parameters(model)`` called after every ``optimizer.step()`` — the same values (tested), without
    a second copy of the model and without a separate pass over the weights: around a ravine optimizer on the
    fused path, the average is updated inside the step's kernel, where the new weights are still in registers.
    Like AveragedModel by default, only parameters are averaged (not buffers such as BatchNorm statistics).

    Evaluate with the averaged weights inside ``with ema.averaged_weights(): ...`` (the parameters hold the
    average there and get their own values back on exit), or read one with :meth:`average_of`. The averages
    (``state_dict()['state'][i]['ema_param']``) and the count (``param_groups[*]['ema_count']``) are saved.
    ``param_groups``, ``state``, ``zero_grad`` and LR schedulers act on the wrapped optimizer. Steps skipped for
    non-finite gradients (``skip_nonfinite``) do not update the average.

    Args:
        optimizer: the optimizer whose parameters are averaged.
        decay: the weight of the old average, in [0, 1] (0.999 is AveragedModel's EMA default).
    """

    average_key, counter_key, options = EMA_KEY, COUNT_KEY, ("decay",)

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float = 0.999) -> None:
        check_unit_interval("decay", decay)
        super().__init__(optimizer, decay=decay)

    @property
    def count(self) -> int:
        """How many steps the average has seen (AveragedModel's ``n_averaged``)."""
        return self.steps_taken

    @eager_only
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step of the wrapped optimizer, then the average moves towards the new weights."""
        self._adopt_loaded_averages()
        if self.steps_taken == 0:
            self.averages.clear()
        new = [p for p in self._params() if p not in self.averages]  # all at the first step; a group added later
        weight = 1 - self.decay if self.averages else None
        loss, taken, folded = self._inner_step(closure, weight, write_back=False)
        if not taken:
            return loss
        if weight is not None and not folded:
            self._average_now(weight, write_back=False)
        with torch.no_grad():  # θ̄ ← θ, as AveragedModel's first update_parameters copies
            for p in new:
                self.averages[p] = p.detach().clone()
        self.steps_taken += 1
        return loss

    def average_of(self, p: Tensor) -> Tensor:
        """The averaged value of parameter ``p`` (a tensor of its shape)."""
        if p not in self.averages:
            raise KeyError(f"WeightEMA.average_of: no average for this {tuple(p.shape)} parameter yet (the "
                           "average starts at the first step, and only for the wrapped optimizer's parameters)")
        return self.averages[p]

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the parameters hold their averages (for evaluation or saving); on exit their own
        values come back, exactly."""
        if self.steps_taken == 0:
            raise RuntimeError("WeightEMA.averaged_weights(): no step taken yet, so there is no average")
        params = [p for p in self._params() if p in self.averages]
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.copy_(self.averages[p])
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(params, own, strict=True):
                    p.copy_(value)

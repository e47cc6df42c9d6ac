"""Wrappers that keep an average of the weights beside any optimizer: the machinery Lookahead and WeightEMA share.

A wrapper is a :class:`torch.optim.Optimizer` whose ``param_groups``, ``state``, ``zero_grad``,
``add_param_group`` and LR schedulers act on the wrapped optimizer. It keeps one average tensor per parameter
(``averages``) and a step counter stored in the wrapped optimizer's param groups — so it travels with anything
that copies groups (``state_dict``, ZeroRedundancyOptimizer's group syncing, DCP) and inner optimizers ignore
it. ``state_dict()`` is the inner optimizer's, plus each parameter's average under the wrapper's key; loading
restores both, so a resumed run continues bit-identically.

After an inner step the averages move towards the parameters (:mod:`ravine.engine.averaging`); around a ravine
optimizer this is folded into the step itself (into the fused kernel on the fused path), around any other
optimizer it runs after the step, multi-tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ravine.engine.averaging import lerp_averages
from ravine.engine.optimizer import Optimizer


class WeightAverages(torch.optim.Optimizer):
    """Base of :class:`~ravine.Lookahead` and :class:`~ravine.WeightEMA` (see the module docstring)."""

    average_key: ClassVar[str]  # the per-parameter key of the averages in state_dict()
    counter_key: ClassVar[str]  # the param-group key of the step counter
    options: ClassVar[tuple[str, ...]]  # the wrapper's own hyperparameters (attributes and ``defaults``)

    def __init__(self, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"Invalid optimizer: {optimizer!r} ({type(self).__name__} wraps a "
                             "torch.optim.Optimizer instance)")
        # Optimizer.__init__ would build param_groups of its own; __setstate__ sets up the hooks instead.
        self.__setstate__({"optimizer": optimizer, "defaults": dict(options), "averages": {}, **options})
        for group in optimizer.param_groups:
            group.setdefault(self.counter_key, 0)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        inner = state.get("optimizer")
        if isinstance(inner, Optimizer):  # with step_in_backward the update starts inside backward
            inner._backward.on_start.append(self._before_step)

    def _before_step(self) -> None:
        """What must happen before the inner optimizer's update begins (default: nothing)."""

    def __getstate__(self) -> dict[str, Any]:
        keys = ("optimizer", "defaults", "averages", *self.options)
        return {key: self.__dict__[key] for key in keys}

    @property
    def steps_taken(self) -> int:
        """Steps taken (skipped non-finite steps excluded), kept in the wrapped optimizer's param groups."""
        return int(max((group.get(self.counter_key, 0) for group in self.param_groups), default=0))

    @steps_taken.setter
    def steps_taken(self, value: int) -> None:
        for group in self.param_groups:
            group[self.counter_key] = int(value)

    # ---- the wrapped optimizer's view ------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        step = self.steps_taken
        self.optimizer.add_param_group(param_group)
        self.steps_taken = step

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def train(self) -> None:
        """The inner optimizer's ``train()`` (Schedule-Free: parameters back to y, where gradients are taken)."""
        self._inner_mode("train")

    def eval(self) -> None:
        """The inner optimizer's ``eval()`` (Schedule-Free: parameters to x, the average to evaluate)."""
        self._inner_mode("eval")

    def _inner_mode(self, mode: str) -> None:
        switch = getattr(self.optimizer, mode, None)
        if not callable(switch):
            raise AttributeError(f"{type(self).__name__}.{mode}(): the inner {type(self.optimizer).__name__} has "
                                 f"no {mode}() (only Schedule-Free optimizers have train and eval modes)")
        switch()

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={getattr(self, name)}" for name in self.options)
        return f"{type(self).__name__}({options}, optimizer={self.optimizer!r})"

    def _params(self) -> list[Tensor]:
        """Parameters in torch's state-dict order: first appearance across groups."""
        seen: dict[int, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                seen.setdefault(id(p), p)
        return list(seen.values())

    # ---- stepping ----------------------------------------------------------------------------------
    def _adopt_loaded_averages(self) -> None:
        """Averages written straight into the inner state by a loader that bypasses load_state_dict
        (ZeroRedundancyOptimizer does): adopt them, and keep the inner optimizer's state its own."""
        for p in self._params():
            inner_state = self.optimizer.state.get(p)
            if inner_state and self.average_key in inner_state:
                self.averages[p] = inner_state.pop(self.average_key)

    def _inner_step(self, closure: Callable[[], Any] | None, weight: float | None, write_back: bool
                    ) -> tuple[Any, bool, bool]:
        """The inner step, with the averages moved by ``weight`` afterwards (unless None). Returns the loss,
        whether the step was taken (not skipped for non-finite gradients), and whether the inner optimizer
        folded the averaging into its step."""
        skipped_before = getattr(self.optimizer, "skipped_steps", None)
        folded = weight is not None and isinstance(self.optimizer, Optimizer)
        if folded:
            self.optimizer.fold_average(self.averages, weight, write_back=write_back)
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        taken = skipped_before is None or self.optimizer.skipped_steps == skipped_before
        return loss, taken, folded

    def _average_now(self, weight: float, write_back: bool) -> None:
        """Every parameter that has an average moves it (``lerp_averages``), after an unfolded inner step."""
        params = [p for p in self._params() if p in self.averages]
        lerp_averages([self.averages[p] for p in params], params, weight, write_back)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The inner optimizer's state dict, plus each parameter's average and the step counter."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        inner = self.optimizer.state_dict()
        state = {index: dict(values) for index, values in inner["state"].items()}
        for index, p in enumerate(self._params()):
            if p in self.averages:
                state.setdefault(index, {})[self.average_key] = self.averages[p]
        result = {"state": state, "param_groups": inner["param_groups"]}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, result) or result
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a state dict made by :meth:`state_dict` (or a plain one of the inner optimizer)."""
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = pre_hook(self, state_dict) or state_dict
        groups = [{self.counter_key: 0, **group} for group in state_dict["param_groups"]]  # plain inner dicts: 0
        state: dict[Any, dict[str, Any]] = {}
        saved_averages: dict[Any, Tensor] = {}
        for index, values in state_dict["state"].items():
            values = dict(values)
            if self.average_key in values:
                saved_averages[index] = values.pop(self.average_key)
            if values:
                state[index] = values
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        # Saved keys map to parameters by position across groups, as in torch's load_state_dict (they are
        # ints from state_dict(), fully qualified names from DCP).
        saved_keys = [key for group in groups for key in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        self.averages = {}
        for key, p in zip(saved_keys, params, strict=False):
            if key in saved_averages:
                self.averages[p] = saved_averages[key].to(dtype=p.dtype, device=p.device, copy=True)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


__all__ = ["WeightAverages"]

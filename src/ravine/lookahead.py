"""Lookahead (Zhang et al., 2019): k steps forward, one step back, around any torch optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ravine.engine.averaging import lerp_averages
from ravine.engine.eager_only import eager_only
from ravine.engine.optimizer import Optimizer
from ravine.engine.validation import check_unit_interval

SLOW_KEY = "slow_param"
STEP_KEY = "lookahead_step"


class Lookahead(torch.optim.Optimizer):
    r"""Wrap any :class:`torch.optim.Optimizer` (the *fast* optimizer) with Lookahead's slow weights.

    Algorithm (φ the slow weights, θ the fast ones, φ₀ = θ₀)::

        every step:       θ ← inner_step(θ)
        every k-th step:  φ ← φ + α·(θ − φ);  θ ← φ

    Paper: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.

    ``param_groups``, ``state``, ``zero_grad``, ``add_param_group`` and LR schedulers act on the wrapped
    optimizer. Unlike the reference implementation, the slow weights (``state_dict()['state'][i]
    ['slow_param']``) and the step counter (``param_groups[*]['lookahead_step']``, kept in the inner
    optimizer's groups) are saved, so a resumed run continues bit-identically — also through
    ZeroRedundancyOptimizer and DCP; the rest of the state dict is the inner optimizer's own.

    Args:
        optimizer: the fast optimizer.
        k: synchronise every ``k`` steps (≥ 1).
        alpha: slow-weight step size in [0, 1].
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"Invalid optimizer: {optimizer!r} (Lookahead wraps a torch.optim.Optimizer instance)"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Invalid k value: {k!r} (k must be an integer >= 1)")
        check_unit_interval("alpha", alpha)
        # Optimizer.__init__ would build param_groups of its own; __setstate__ sets up the hooks instead.
        self.__setstate__(
            {
                "optimizer": optimizer,
                "defaults": {"k": k, "alpha": alpha},
                "k": k,
                "alpha": alpha,
                "slow_params": {},
            }
        )
        for group in optimizer.param_groups:
            group.setdefault(STEP_KEY, 0)

    def __getstate__(self) -> dict[str, Any]:
        keys = ("optimizer", "defaults", "k", "alpha", "slow_params")
        return {key: self.__dict__[key] for key in keys}

    # The step counter lives in the wrapped optimizer's param groups, so it travels with anything that copies
    # groups — state_dict, ZeroRedundancyOptimizer's group syncing, DCP — and inner optimizers ignore it.
    @property
    def lookahead_step(self) -> int:
        """Steps taken (skipped non-finite steps excluded); a sync happens whenever it reaches a multiple of k."""
        return int(max((group.get(STEP_KEY, 0) for group in self.param_groups), default=0))

    @lookahead_step.setter
    def lookahead_step(self, value: int) -> None:
        for group in self.param_groups:
            group[STEP_KEY] = int(value)

    # ---- the wrapped optimizer's view ------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        step = self.lookahead_step
        self.optimizer.add_param_group(param_group)
        self.lookahead_step = step

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
            raise AttributeError(f"Lookahead.{mode}(): the inner {type(self.optimizer).__name__} has no {mode}() "
                                 "(only Schedule-Free optimizers have train and eval modes)")
        switch()

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"

    def _params(self) -> list[Tensor]:
        """Parameters in torch's state-dict order: first appearance across groups."""
        seen: dict[int, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                seen.setdefault(id(p), p)
        return list(seen.values())

    # ---- the algorithm ---------------------------------------------------------------------------
    @eager_only
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One fast step; every k-th call also pulls the slow weights towards the fast ones and resets θ."""
        for p in self._params():
            inner_state = self.optimizer.state.get(p)
            if inner_state and SLOW_KEY in inner_state:
                # Written straight into the inner state by a loader that bypasses load_state_dict
                # (ZeroRedundancyOptimizer does): adopt it, and keep the inner optimizer's state its own.
                self.slow_params[p] = inner_state.pop(SLOW_KEY)
            if p not in self.slow_params:
                self.slow_params[p] = p.detach().clone()  # φ₀ = θ₀ (before the first inner step)
        skipped_before = getattr(self.optimizer, "skipped_steps", None)
        sync = (self.lookahead_step + 1) % self.k == 0
        # A ravine optimizer folds the synchronisation into this step (on the fused path, into its kernel); a
        # step it skips (overflow, non-finite gradients) synchronises nothing.
        folded = sync and isinstance(self.optimizer, Optimizer)
        if folded:
            self.optimizer.fold_average(self.slow_params, self.alpha, write_back=True)
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        if skipped_before is not None and self.optimizer.skipped_steps != skipped_before:
            return loss  # the inner optimizer skipped a non-finite step: it does not count towards k
        self.lookahead_step += 1
        if sync and not folded:
            self.synchronize()
        return loss

    def synchronize(self) -> None:
        """φ ← φ + α·(θ − φ); θ ← φ, for every parameter (multi-tensor per device, dtype and layout).

        Called every k-th step for an inner optimizer that is not a ravine one; a ravine optimizer does the same
        inside its k-th step (:meth:`ravine.Optimizer.fold_average`: in the fused kernel on the fused path).
        """
        params = self._params()
        lerp_averages([self.slow_params[p] for p in params], params, self.alpha, write_back=True)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The inner optimizer's state dict, plus ``slow_param`` per parameter and ``lookahead_step``."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        inner = self.optimizer.state_dict()
        state = {index: dict(values) for index, values in inner["state"].items()}
        for index, p in enumerate(self._params()):
            if p in self.slow_params:
                state.setdefault(index, {})[SLOW_KEY] = self.slow_params[p]
        result = {"state": state, "param_groups": inner["param_groups"]}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, result) or result
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a state dict made by :meth:`state_dict` (or a plain one of the inner optimizer)."""
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = pre_hook(self, state_dict) or state_dict
        groups = [{STEP_KEY: 0, **group} for group in state_dict["param_groups"]]  # plain inner dicts: 0
        state: dict[Any, dict[str, Any]] = {}
        slow: dict[Any, Tensor] = {}
        for index, values in state_dict["state"].items():
            values = dict(values)
            if SLOW_KEY in values:
                slow[index] = values.pop(SLOW_KEY)
            if values:
                state[index] = values
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        # Saved keys map to parameters by position across groups, as in torch's load_state_dict (they are
        # ints from state_dict(), fully qualified names from DCP).
        saved_keys = [key for group in groups for key in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        self.slow_params = {}
        for key, p in zip(saved_keys, params, strict=False):
            if key in slow:
                self.slow_params[p] = slow[key].to(dtype=p.dtype, device=p.device, copy=True)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

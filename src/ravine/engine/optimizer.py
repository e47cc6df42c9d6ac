"""The optimizer engine: how any algorithm is run. It knows no algorithm by name.

A ravine optimizer is a :class:`torch.optim.Optimizer` whose subclass states only

* its defaults (passed to ``__init__``) and their validation,
* ``init_state(p, hp)``: the state tensors a parameter starts with, and
* ``update(p, grad, state, hp)``: one step of its math, written with tensor methods.

The engine supplies everything else: parameter groups, lazy (or eager) state creation, the ``step`` counter
with torch's placement and dtype rules, ``maximize``, complex parameters as real views, sparse-gradient
checks, closures, and the choice between the per-tensor path and the multi-tensor (foreach) path, which runs
the very same ``update`` over :class:`~ravine.engine.tensorlist.TensorList` batches. Hooks, ``state_dict``,
``zero_grad`` and the rest come from ``torch.optim.Optimizer`` unchanged, so schedulers, GradScaler and
``torch.distributed`` treat ravine optimizers like torch's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ravine.engine.tensorlist import Maths, TensorList
from ravine.engine.validation import check_fused_flags
from ravine.engine.views import Hyper, StateView, real_view

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]

FUSED_NOT_AVAILABLE = (
    "ravine: fused=True is not available in this release; the compiled fused step is tracked in the "
    "'Fused: every optimizer at the memory-bandwidth limit' issue. Use fused=None (the default) or foreach=True."
)


def scalar_dtype() -> torch.dtype:
    """torch's dtype for the ``step`` counter: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _foreach_devices() -> list[str]:
    try:
        from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

        return list(_get_foreach_kernels_supported_devices())
    except ImportError:  # pragma: no cover - older or trimmed torch builds
        return ["cuda", "xpu"]


def default_to_foreach(params: list[Tensor]) -> bool:
    """torch's default: multi-tensor when every parameter is a plain (or DTensor) tensor on an accelerator."""
    from torch.optim import optimizer as torch_optimizer

    supported_types = tuple(torch_optimizer._foreach_supported_types)  # DTensor joins this list on import
    devices = _foreach_devices()
    return all(type(p) in supported_types and p.device.type in devices for p in params)


class Optimizer(torch.optim.Optimizer):
    """Base class of every ravine optimizer, and the way to write your own.

    Example — the classic ``p ← p − lr·g`` in full, with param groups, ``state_dict``, hooks, closures,
    ``maximize`` and the multi-tensor path included::

        class SimpleSGD(ravine.Optimizer):
            def __init__(self, params, lr=0.01):
                super().__init__(params, dict(lr=lr))

            def update(self, p, grad, state, hp):
                p.add_(grad, alpha=-hp.lr)

    Class attributes a subclass may set:

    * ``step_counter`` — keep torch's ``state["step"]`` (a 0-d float tensor on the CPU) and pass its value,
      counted from 1, as ``hp.step``.
    * ``eager_state`` — create state at construction rather than at the first step (torch's Adagrad).
    * ``supports_sparse`` — accept sparse gradients (they always take the per-tensor path).
    """

    step_counter: ClassVar[bool] = False
    eager_state: ClassVar[bool] = False
    supports_sparse: ClassVar[bool] = False

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        defaults = dict(defaults)
        defaults.setdefault("maximize", False)
        defaults.setdefault("foreach", None)
        defaults.setdefault("fused", None)
        check_fused_flags(defaults["foreach"], defaults["fused"])
        if defaults["fused"]:
            raise RuntimeError(FUSED_NOT_AVAILABLE)
        super().__init__(params, defaults)
        if self.eager_state:
            for group in self.param_groups:
                hp = Hyper(group)
                for p in group["params"]:
                    self.state[p] = self._new_state(p, hp)

    # ---- what a subclass defines -------------------------------------------------------------------
    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        """The state tensors a parameter starts with (created with ``*_like(p)``). Default: none."""
        return {}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        """One step of the algorithm, in place on ``p`` and ``state``.

        ``p`` and ``grad`` are tensors (per-tensor path) or TensorLists (multi-tensor path); ``grad`` is
        already negated under ``maximize``; complex tensors arrive as real views.
        """
        raise NotImplementedError(f"{type(self).__name__} must define update(p, grad, state, hp)")

    # ---- the engine --------------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Groups saved by torch.optim or by an older ravine lack newer flags: give them this class's defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for param_state in self.state.values():
            step = param_state.get("step") if isinstance(param_state, dict) else None
            if step is not None and not torch.is_tensor(step):
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype())

    def _new_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        if self.step_counter:
            state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state.update(self.init_state(p, hp))
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it runs with
                gradients enabled, and its loss is returned.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        hp = Hyper(group)
        has_sparse = False
        for p in params:
            if p.grad.is_sparse:
                if not self.supports_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                has_sparse = True
            if not self.state.get(p):
                new_state = self._new_state(p, hp)
                if new_state:
                    self.state[p] = new_state
        foreach = group["foreach"]
        if foreach is None:
            foreach = default_to_foreach(params)
        if foreach and not has_sparse:
            for batch in self._batches(params):
                self._run(batch, group, hp, batched=True)
        else:
            for p in params:
                self._run([p], group, hp, batched=False)

    def _batches(self, params: list[Tensor]) -> list[list[Tensor]]:
        """Parameters that can share foreach kernels and scalars: same device, dtype, step and state keys."""
        batches: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in params:
            state = self.state.get(p, {})
            step = state["step"].item() if "step" in state else None
            key = (p.device, p.dtype, p.grad.dtype, type(p), step, tuple(sorted(state)))
            batches.setdefault(key, []).append(p)
        return list(batches.values())

    def _run(self, params: list[Tensor], group: dict[str, Any], hp: Hyper, *, batched: bool) -> None:
        states = [self.state[p] if self.state.get(p) else {} for p in params]
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads) if batched else [-grads[0]]
        if self.step_counter:
            steps = [s["step"] for s in states]
            if batched:
                torch._foreach_add_(steps, 1)
            else:
                steps[0] += 1
            hp.step = steps[0].item()
        views = StateView(states, is_complex=params[0].is_complex(), batched=batched)
        p_real = [real_view(p) for p in params]
        g_real = [real_view(g) for g in grads]
        if batched:
            self.update(TensorList(p_real), TensorList(g_real), views, hp)
        else:
            self.update(p_real[0], g_real[0], views, hp)
        for p, state in zip(params, states, strict=True):
            if state and not self.state.get(p):
                self.state[p] = state  # state the update created lazily (e.g. SGD's momentum buffer)

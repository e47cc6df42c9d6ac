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

import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ravine.engine.fused import FlatGroup, compile_unavailable_reason, compiled_update
from ravine.engine.tensorlist import Maths, TensorList
from ravine.engine.validation import check_fused_flags, check_state_dtype
from ravine.engine.views import Hyper, StateView, real_view

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]

# Group entries that choose how the engine runs, not what the algorithm computes.
ENGINE_KEYS = frozenset({"params", "param_names", "foreach", "fused", "skip_nonfinite", "state_dtype",
                         "skipped_steps", "initial_lr"})


LOW_PRECISION = (torch.bfloat16, torch.float16)


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

    Every ravine optimizer also understands two group options, passed through ``defaults``:

    * ``skip_nonfinite`` (default False) — if any gradient of the step holds NaN or Inf, change no parameter
      and no state, add one to ``skipped_steps`` and warn once with the parameters' names.
    * ``state_dtype`` (default None) — dtype of floating state: None means float32 for bfloat16/float16
      parameters (whose update is then computed in float32 and rounded once) and the parameter's dtype
      otherwise. Loading a checkpoint keeps this dtype instead of casting state to the parameter's.
    """

    step_counter: ClassVar[bool] = False
    eager_state: ClassVar[bool] = False
    supports_sparse: ClassVar[bool] = False

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        defaults = dict(defaults)
        defaults.setdefault("maximize", False)
        defaults.setdefault("foreach", None)
        defaults.setdefault("fused", None)
        defaults.setdefault("skip_nonfinite", False)
        defaults["state_dtype"] = check_state_dtype(defaults.get("state_dtype"))
        defaults.setdefault("skipped_steps", 0)
        check_fused_flags(defaults["foreach"], defaults["fused"])
        super().__init__(params, defaults)
        self._flat_groups: dict[tuple[int, ...], FlatGroup] = {}
        self._fused_seen: set[int] = set()
        self._fused_scalars: dict[tuple[Any, ...], Tensor] = {}
        # torch's GradScaler contract for fused optimizers: it sets grad_scale/found_inf and calls step();
        # the fused kernel unscales as it reads the gradients instead of a separate pass.
        self._step_supports_amp_scaling = any(group["fused"] for group in self.param_groups)
        self._inv_scale: Tensor | None = None
        for group in self.param_groups:
            if group["fused"]:
                for device in {p.device for p in group["params"]}:
                    reason = compile_unavailable_reason(device)
                    if reason is not None:
                        raise RuntimeError(f"{type(self).__name__}(fused=True) is not available: {reason}")
        if self.eager_state:
            for group in self.param_groups:
                hp = Hyper(group)
                for p in group["params"]:
                    self.state[p] = self._new_state(p, hp, group)

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

    def creates_state_in_update(self, hp: Hyper) -> bool:
        """Whether ``update`` assigns state on a parameter's first step (SGD's momentum buffer).

        Such a first step runs per tensor on the fused path, since compiled steps work on existing state.
        """
        return False

    # ---- the engine --------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return super().__getstate__()  # flat buffers and compiled-step caches are rebuilt after unpickling

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._flat_groups, self._fused_seen, self._fused_scalars = {}, set(), {}
        self._inv_scale = None
        self._step_supports_amp_scaling = any(group.get("fused") for group in self.param_groups)
        # Groups saved by torch.optim or by an older ravine lack newer flags: give them this class's defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for param_state in self.state.values():
            step = param_state.get("step") if isinstance(param_state, dict) else None
            if step is not None and not torch.is_tensor(step):
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype())

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by ``skip_nonfinite`` (saved in the state dict with the param groups)."""
        return max((group.get("skipped_steps", 0) for group in self.param_groups), default=0)

    @staticmethod
    def compute_dtype(p: Tensor, group: dict[str, Any]) -> torch.dtype:
        """The dtype of ``p``'s floating state and of its update arithmetic."""
        if not p.is_floating_point():
            return p.dtype
        if group.get("state_dtype") is not None:
            return getattr(torch, group["state_dtype"])
        return torch.float32 if p.dtype in LOW_PRECISION else p.dtype

    def _new_state(self, p: Tensor, hp: Hyper, group: dict[str, Any]) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        if self.step_counter:
            state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        dtype = self.compute_dtype(p, group)
        like = p if dtype == p.dtype else torch.empty_like(p, dtype=dtype)
        state.update(self.init_state(like, hp))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """torch's loading, except that floating state keeps this optimizer's state dtype.

        torch casts every floating state tensor to its parameter's dtype, which rounds the float32 state of
        bfloat16 parameters to bfloat16 on every resume; here such state is restored from the checkpoint's
        own values in the dtype :meth:`compute_dtype` gives.
        """
        super().load_state_dict(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [(p, group) for group in self.param_groups for p in group["params"]]
        for saved_id, (p, group) in zip(saved_ids, params, strict=False):
            dtype = self.compute_dtype(p, group)
            saved = state_dict["state"].get(saved_id, {})
            for key, value in saved.items():
                if key != "step" and torch.is_tensor(value) and value.is_floating_point() and dtype != p.dtype:
                    self.state[p][key] = value.to(device=p.device, dtype=dtype, copy=True)

    @torch.compiler.disable  # a compiled training step calls this eagerly; fused=True is the compiled path
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it runs with
                gradients enabled, and its loss is returned.

        Inside a ``torch.compile``-d function this step runs eagerly (dynamo does not trace it), so compiled
        training loops get exactly the eager results; ``fused=True`` compiles the update itself.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)  # set by GradScaler when _step_supports_amp_scaling
        if found_inf is not None and bool(found_inf.sum().item()):
            return loss  # overflow: no parameter, state or step count changes
        grad_scale = getattr(self, "grad_scale", None)
        self._inv_scale = None if grad_scale is None else grad_scale.double().reciprocal().float()
        if any(group["skip_nonfinite"] for group in self.param_groups) and self._skip_nonfinite_step():
            return loss
        for group in self.param_groups:
            self._step_group(group)
        self._inv_scale = None
        return loss

    def _skip_nonfinite_step(self) -> bool:
        """True (and the skip counted) when any gradient holds NaN or Inf. One host sync on this path."""
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return False
        checks = [torch.isfinite(g._values() if g.is_sparse else g).all() for g in grads]
        if bool(torch.stack([c.to(checks[0].device) for c in checks]).all()):
            return False
        for group in self.param_groups:
            group["skipped_steps"] = group.get("skipped_steps", 0) + 1
        if not getattr(self, "_warned_nonfinite", False):
            self._warned_nonfinite = True
            warnings.warn(
                f"{type(self).__name__}: skipped a step because of non-finite gradients in "
                f"{', '.join(self._nonfinite_names())} (warning once; see optimizer.skipped_steps)",
                RuntimeWarning,
                stacklevel=3,
            )
        return True

    def _nonfinite_names(self) -> list[str]:
        names = []
        for g_index, group in enumerate(self.param_groups):
            labels = group.get("param_names") or [None] * len(group["params"])
            for p_index, (p, label) in enumerate(zip(group["params"], labels, strict=True)):
                grad = p.grad
                if grad is None:
                    continue
                values = grad._values() if grad.is_sparse else grad
                if not bool(torch.isfinite(values).all()):
                    names.append(label or f"param_groups[{g_index}]['params'][{p_index}] {tuple(p.shape)}")
        return names

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
                new_state = self._new_state(p, hp, group)
                if new_state:
                    self.state[p] = new_state
        if group["fused"] and not has_sparse:
            self._step_fused(group, params, hp)
            return
        self._unscale(params)
        foreach = group["foreach"]
        if foreach is None:
            foreach = default_to_foreach(params)
        if foreach and not has_sparse:
            for batch in self._batches(params, chunked=True):
                self._run(batch, group, hp, batched=True)
        else:
            for p in params:
                self._run([p], group, hp, batched=False)

    # ---- the fused path ------------------------------------------------------------------------------
    def _step_fused(self, group: dict[str, Any], params: list[Tensor], hp: Hyper) -> None:
        """Compiled steps over flat buffers; state-creating first steps and odd tensors run per tensor."""
        lazy = self.creates_state_in_update(hp)
        for batch in self._batches(params):
            fusable = all(
                type(p) in (Tensor, torch.nn.Parameter) and p.is_floating_point() and p.is_contiguous()
                and (not lazy or id(p) in self._fused_seen or self.state.get(p))
                for p in batch
            )
            if not fusable:  # a first step that creates state, DTensor, complex or strided tensors: eager
                self._unscale(batch)
                for p in batch:
                    self._run([p], group, hp, batched=False)
                    self._fused_seen.add(id(p))
                continue
            self._run_fused(batch, group)

    def _unscale(self, params: list[Tensor]) -> None:
        """Divide gradients by GradScaler's scale in place, as GradScaler.unscale_ would (eager paths)."""
        if self._inv_scale is None:
            return
        by_device: dict[torch.device, list[Tensor]] = {}
        for p in params:
            by_device.setdefault(p.grad.device, []).append(p.grad)
        for device, grads in by_device.items():
            torch._foreach_mul_(grads, self._inv_scale.to(device))

    def _run_fused(self, params: list[Tensor], group: dict[str, Any]) -> None:
        states = [self.state[p] if self.state.get(p) else {} for p in params]
        key = tuple(id(p) for p in params)
        flat = self._flat_groups.get(key)
        if flat is None or not flat.intact(states):
            for other in [k for k in self._flat_groups if set(k) & set(key)]:
                del self._flat_groups[other]
            flat = self._flat_groups[key] = FlatGroup(params, states)
        flat.collect_grads()
        steps = [s["step"] for s in states] if self.step_counter else []
        step = steps[0].item() + 1 if steps else None
        # Scalar arithmetic (bias corrections, lr/bc) in float64, as the eager paths do it in Python floats.
        device = params[0].device
        scalar_type = torch.float32 if device.type == "mps" else torch.float64
        scalars, statics, flags = self._fused_hyper(group, step, device, scalar_type)
        with torch._dynamo.config.patch(recompile_limit=128):
            compiled_update()(
                type(self).update, self, flat.param_buffer, flat.grad_buffer, flat.state_buffers,
                scalars, statics, flags,
            )
        if steps:  # counted only once the step has run
            torch._foreach_add_(steps, 1)

    def _fused_hyper(
        self, group: dict[str, Any], step: float | None, device: torch.device, dtype: torch.dtype
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
        """Numbers as cached 0-d tensors (filled in place: no recompiles), flags for 0/1 branches."""
        scalars: dict[str, Any] = {}
        statics: dict[str, Any] = {}
        flags: dict[str, bool] = {}

        def as_tensor(name: str, value: Any) -> Tensor:
            if torch.is_tensor(value):
                flags[f"{name}==0"] = flags[f"{name}==1"] = False  # reading it would cost a host sync
                return value.to(device=device, dtype=dtype)
            flags[f"{name}==0"], flags[f"{name}==1"] = value == 0, value == 1
            cached = self._fused_scalars.get((id(group), name, device, dtype))
            if cached is None:
                cached = self._fused_scalars[(id(group), name, device, dtype)] = torch.zeros((), dtype=dtype,
                                                                                         device=device)
            return cached.fill_(value)

        entries = {**group, "step": step} if step is not None else dict(group)
        entries["grad_sign"] = -1.0 if group["maximize"] else 1.0
        entries["inv_scale"] = 1.0 if self._inv_scale is None else self._inv_scale
        for name, value in entries.items():
            # Only the hyperparameters this class declares (plus step and the two engine scalars) enter the
            # graph; keys that users or wrappers add to a group (Lookahead's counter, tags) stay out of it.
            declared = name in self.defaults or name in ("step", "grad_sign", "inv_scale")
            if name in ENGINE_KEYS or name == "maximize" or not declared:
                continue
            if isinstance(value, bool) or value is None or isinstance(value, str):
                statics[name] = value
            elif isinstance(value, tuple):
                scalars[name] = tuple(as_tensor(f"{name}[{i}]", v) for i, v in enumerate(value))
            else:
                scalars[name] = as_tensor(name, value)
        return scalars, statics, flags

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``, except that gradients living in a fused group's flat buffer are zeroed.

        Dropping them (``set_to_none``) would make autograd allocate fresh gradients that the next fused step
        must copy back into the buffer; zeroing keeps them in place. As with ``set_to_none=False`` in torch,
        such a parameter then steps with a zero gradient even if backward did not reach it.
        """
        if not self._flat_groups:
            super().zero_grad(set_to_none=set_to_none)
            return
        owned: set[int] = set()
        for flat in self._flat_groups.values():
            owned.update(id(p) for p in flat.params if flat.owns_grad(p))
            flat.grad_buffer.zero_()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or id(p) in owned:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def _batches(self, params: list[Tensor], *, chunked: bool = False) -> list[list[Tensor]]:
        """Parameters that can share foreach kernels and scalars: same device, dtype, step and state keys.

        With ``chunked`` each batch is split into runs of at most the largest parameter's size, so the
        temporaries a multi-tensor update makes (``denom``, ...) never exceed that size in total — the peak
        memory of a foreach step over a whole model is a known complaint about torch's foreach path.
        """
        batches: dict[tuple[Any, ...], list[Tensor]] = {}
        for p in params:
            state = self.state.get(p, {})
            step = state["step"].item() if "step" in state else None
            # DTensors batch only with the same mesh and placements (one foreach call must not mix them).
            layout = (getattr(p, "device_mesh", None), tuple(getattr(p, "placements", ())))
            key = (p.device, p.dtype, p.grad.dtype, type(p), layout, step, tuple(sorted(state)))
            batches.setdefault(key, []).append(p)
        if not chunked:
            return list(batches.values())
        limit = max(p.numel() for p in params)
        chunks: list[list[Tensor]] = []
        for batch in batches.values():
            chunk: list[Tensor] = []
            size = 0
            for p in batch:
                if chunk and size + p.numel() > limit:
                    chunks.append(chunk)
                    chunk, size = [], 0
                chunk.append(p)
                size += p.numel()
            chunks.append(chunk)
        return chunks

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
        dtype = self.compute_dtype(params[0], group)
        if dtype == params[0].dtype:
            work, g_work = [real_view(p) for p in params], [real_view(g) for g in grads]
        else:  # e.g. bfloat16 parameters with float32 state: compute in float32, round once at the end
            work, g_work = [p.to(dtype) for p in params], [g.to(dtype) for g in grads]
        if batched:
            self.update(TensorList(work), TensorList(g_work), views, hp)
        else:
            self.update(work[0], g_work[0], views, hp)
        if dtype != params[0].dtype:
            torch._foreach_copy_(params, work)
        for p, state in zip(params, states, strict=True):
            if state and not self.state.get(p):
                self.state[p] = state  # state the update created lazily (e.g. SGD's momentum buffer)

"""The optimizer contract and step driver: how any algorithm is run. It knows no algorithm by name.

A ravine optimizer is a :class:`torch.optim.Optimizer` whose subclass states only

* its defaults (passed to ``__init__``) and their validation,
* ``kind``: what its math needs — ``"elementwise"``, ``"tensorwise"``, ``"sparse"`` or ``"closure"``
  (:data:`PATHS_BY_KIND` lists the paths each can run on),
* ``init_state(p, hp)``: the state tensors a parameter starts with, and
* ``update(p, grad, state, hp)``: one step of its math, written with tensor methods.

The engine supplies everything else: parameter groups, lazy (or eager) state creation, the ``step`` counter
with torch's placement and dtype rules, ``maximize``, complex parameters as real views, sparse-gradient
checks, closures, one compute-dtype rule, and the choice of path: the eager runner (:mod:`ravine.engine.eager`,
per tensor or multi-tensor) or the fused runner (:mod:`ravine.engine.fused`). Hooks, ``state_dict``,
``zero_grad`` and the rest come from ``torch.optim.Optimizer``, so schedulers, GradScaler and
``torch.distributed`` treat ravine optimizers like torch's own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import warnings
from collections import ChainMap
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from ravine.engine import compact, eager, sharded
from ravine.engine.averaging import Fold, lerp_averages
from ravine.engine.eager_only import eager_only
from ravine.engine.fused import ENGINE_KEYS, FusedRunner, compile_unavailable_reason
from ravine.engine.in_backward import InBackward, check_clip, update_one
from ravine.engine.modifiers import MODIFIER_OPTIONS, check_modifier_options, modifiers_reduce, supported_options
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_fused_flags, check_state_dtype
from ravine.engine.views import Hyper, StateView

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]
MathKind = Literal["elementwise", "tensorwise", "sparse", "closure"]

__all__ = ["ENGINE_FLAGS", "ENGINE_KEYS", "PATHS_BY_KIND", "MathKind", "Optimizer", "ParamsT", "scalar_dtype"]

LOW_PRECISION = (torch.bfloat16, torch.float16)

# How the engine runs any algorithm, accepted by every optimizer's constructor (see Optimizer.__init_subclass__).
ENGINE_FLAGS: dict[str, Any] = {
    "maximize": False, "foreach": None, "fused": None, "skip_nonfinite": False, "state_dtype": None,
    "differentiable": False, "step_in_backward": False, "clip_in_backward": None, "kahan_sum": False,
    "ddp_split": False,
}

# What an algorithm's math needs, and the paths that can run such math correctly.
PATHS_BY_KIND: dict[str, tuple[str, ...]] = {
    # every coordinate is updated from its own values: per tensor, foreach batches, flat fused buffers
    "elementwise": ("per-tensor", "multi-tensor", "fused"),
    # the update needs whole tensors with their shapes (norms, row/column statistics, matrix products)
    "tensorwise": ("per-tensor", "multi-tensor"),
    # sparse gradients only: the update works on a gradient's stored rows
    "sparse": ("per-tensor",),
    # the algorithm drives its own loop through the closure (line searches): it overrides ``step``
    "closure": ("closure",),
}


def scalar_dtype() -> torch.dtype:
    """torch's dtype for the ``step`` counter: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


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

    * ``kind`` — what the math needs (default ``"elementwise"``); the engine refuses paths it cannot run:
      ``"tensorwise"`` updates see whole tensors (never fused), ``"sparse"`` ones run per tensor only, and a
      ``"closure"`` algorithm (LBFGS) writes its own ``step``.
    * ``reductions`` — elementwise math that also uses whole-tensor reductions (``norm``, ``sum``, ``mean``,
      ``amax`` of a tensor: LAMB-style trust ratios). Every path provides them: plain tensor methods per tensor,
      one 0-d tensor per tensor on the multi-tensor path, segment reductions over the flat buffer when fused.
    * ``batched_update`` — tensorwise math that treats leading dimensions as a batch (Muon): the multi-tensor
      path stacks same-shape parameters and makes one ``update`` call per shape.
    * ``step_counter`` — keep torch's ``state["step"]`` (a 0-d float tensor on the CPU, or on the parameter's
      device with ``step_on_param_device``) and pass its value, counted from 1, as ``hp.step``.
    * ``scalar_state`` — names of per-parameter 0-d state tensors (NAdam's ``mu_product``), advanced by
      :meth:`step_scalars`; never flattened into fused buffers.
    * ``eager_state`` — create state at construction rather than at the first step (torch's Adagrad).
    * ``supports_sparse`` — accept sparse gradients (they always take the per-tensor path).
    * ``nonnegative_state`` — state keys that never hold negative values (second moments): with
      ``state_dtype="int8"`` they are stored in the square-root domain, unsigned (:mod:`ravine.engine.compact`).
    * ``precise_state`` — state keys that are iterates or averages of the weights, not statistics
      (Schedule-Free's ``z``, ASGD's ``ax``): always kept in the compute dtype, whatever ``state_dtype`` says.
    * ``modifier_points`` — the points of the update that modifiers may change (``"update"``: the step
      direction, for ``cautious=True``; ``"momentum"``: the bias-corrected first moment, for AdEMAMix's
      ``ademamix_alpha``); see :mod:`ravine.engine.modifiers`. The update calls them there.

    Every ravine optimizer also understands two group options, passed through ``defaults``:

    * ``skip_nonfinite`` (default False) — if any gradient of the step holds NaN or Inf, change no parameter
      and no state, add one to ``skipped_steps`` and warn once with the parameters' names.
    * ``kahan_sum`` (default False) — for bfloat16/float16 parameters: keep each parameter's rounding error in
      a compensation buffer of its dtype (state ``kahan_comp``), so the update is applied to ``p + error`` and
      updates far below the parameter's precision accumulate instead of being rounded away (Kahan summation;
      as optimi's ``kahan_sum``). Costs one parameter-sized buffer; no effect on float32 parameters.
    * ``state_dtype`` (default None) — how floating state is stored. None: float32 for bfloat16/float16
      parameters (whose update is then computed in float32 and rounded once) and the parameter's dtype
      otherwise. A narrower float (``torch.bfloat16``): stored in it, stochastically rounded, while the update
      still computes in float32. ``"int8"``: blockwise 8-bit (:mod:`ravine.engine.compact`). A wider float
      (float64 for float32 parameters): stored and computed in it. Loading a checkpoint keeps this storage
      instead of casting state to the parameter's dtype.
    """

    kind: ClassVar[MathKind] = "elementwise"
    step_counter: ClassVar[bool] = False
    eager_state: ClassVar[bool] = False
    supports_sparse: ClassVar[bool] = False
    scalar_state: ClassVar[tuple[str, ...]] = ()
    step_on_param_device: ClassVar[bool] = False
    batched_update: ClassVar[bool] = False
    reductions: ClassVar[bool] = False
    modifier_points: ClassVar[tuple[str, ...]] = ()
    nonnegative_state: ClassVar[tuple[str, ...]] = ()
    precise_state: ClassVar[tuple[str, ...]] = ()
    overrides: ClassVar[frozenset[str]] = frozenset()  # per-parameter hooks a subclass defines (set for it)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every subclass's constructor the engine flags, stated once here.

        A subclass states only its own hyperparameters; the :data:`ENGINE_FLAGS` (``maximize``, ``foreach``,
        ``fused``, ``skip_nonfinite``, ``state_dtype``, ``differentiable``) passed by keyword are taken by the
        engine before its
        ``__init__`` runs — unless that ``__init__`` names the flag itself (torch's positional ``foreach`` in
        Adagrad, say), in which case it passes it on in ``defaults`` as usual.
        """
        super().__init_subclass__(**kwargs)
        cls.overrides = frozenset(name for name in ("check_param", "step_scalars")
                                  if getattr(cls, name) is not getattr(Optimizer, name))
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        own = set(inspect.signature(init).parameters)

        @functools.wraps(init)
        def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
            flags = self.__dict__.setdefault("_engine_flags", {})
            for name in (*ENGINE_FLAGS, *MODIFIER_OPTIONS):
                if name in kwargs and name not in own:
                    flags[name] = kwargs.pop(name)
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        defaults = dict(defaults)
        own_defaults = {**ENGINE_FLAGS, **supported_options(self.modifier_points)}
        for name, value in {**own_defaults, **self.__dict__.pop("_engine_flags", {})}.items():
            defaults.setdefault(name, value)
        defaults["state_dtype"] = check_state_dtype(defaults.get("state_dtype"))
        defaults.setdefault("skipped_steps", 0)
        check_fused_flags(defaults["foreach"], defaults["fused"])
        self._fused = FusedRunner(self)
        self._fold: Fold | None = None
        self._backward = InBackward(self)
        self._stored_as: dict[int, Any] = {}  # per param group: the state_dtype its state is stored in
        super().__init__(params, defaults)
        # torch's GradScaler contract for fused optimizers: it sets grad_scale/found_inf and calls step();
        # the fused kernel unscales as it reads the gradients instead of a separate pass.
        # With step_in_backward the flag makes GradScaler hand its scale to step(), which refuses it.
        self._step_supports_amp_scaling = any(group["fused"] or group["step_in_backward"]
                                              for group in self.param_groups)
        self._inv_scale: Tensor | None = None
        if self.eager_state:
            for group in self.param_groups:
                hp = Hyper(group)
                for p in group["params"]:
                    self.state[p] = self._new_state(p, hp, group)

    @classmethod
    def supported_paths(cls) -> tuple[str, ...]:
        """The paths this algorithm's math runs on: per-tensor, multi-tensor, fused (or its own closure loop)."""
        return PATHS_BY_KIND[cls.kind]

    def needs_reductions(self, group: dict[str, Any]) -> bool:
        """Whether a group's update takes whole-tensor reductions: the class says so (``reductions``), or a
        modifier the group turns on does (``cautious``)."""
        return self.reductions or modifiers_reduce(group)

    def kind_of(self, group: dict[str, Any]) -> MathKind:
        """The kind of math a group's update needs. Default: the class's ``kind``; an optimizer whose groups
        run different math (:class:`~ravine.MuonWithAuxAdam`: matrices orthogonalised, the rest AdamW) says
        it per group, and each group then runs on the paths its own kind allows."""
        return self.kind

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, refusing a path this algorithm's kind of math cannot run on."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_modifier_options(type(self).__name__, self.modifier_points, dict(self.options(group)))
        self.check_group(self.options(group), at_step=False)
        kind = self.kind_of(self.options(group))
        name, paths = type(self).__name__, PATHS_BY_KIND[kind]
        if group.get("differentiable"):
            if group.get("fused"):
                raise RuntimeError("`fused` does not support `differentiable`")
            if kind != "elementwise":
                raise ValueError(f"{name} does not support differentiable=True ({kind} math; torch's "
                                 f"{name}, where it exists, has no differentiable mode either)")
            if group.get("foreach"):
                raise ValueError(f"{name}(differentiable=True) runs per tensor under autograd: leave foreach "
                                 "unset or False")
            for option in ("state_dtype", "kahan_sum"):
                if group.get(option):
                    raise ValueError(f"{name}(differentiable=True) keeps its state as autograd computes it: "
                                     f"leave {option} unset (got {group[option]!r})")
        if group.get("ddp_split") and kind != "tensorwise":
            raise ValueError(f"{name}(ddp_split=True) splits whole-tensor updates across DDP's ranks; this "
                             f"group's update is {kind} math, which every rank runs cheaply on its own: leave "
                             "ddp_split unset for it (with MuonWithAuxAdam, set it on the Muon groups)")
        if group.get("step_in_backward") or group.get("clip_in_backward") is not None:
            self._check_step_in_backward(group, kind)
            if group.get("step_in_backward"):
                self._backward.attach(group["params"])
        for flag, path in (("fused", "fused"), ("foreach", "multi-tensor")):
            if group.get(flag) and path not in paths:
                raise ValueError(
                    f"{name}({flag}=True) is not available: {name}'s update is {kind} math, which runs "
                    f"on {', '.join(paths)} only (leave {flag} unset or False)"
                )
        if group.get("fused"):
            for device in {p.device for p in group["params"]}:
                reason = compile_unavailable_reason(device)
                if reason is not None:
                    raise RuntimeError(f"{name}(fused=True) is not available: {reason}")

    def _check_step_in_backward(self, group: dict[str, Any], kind: str) -> None:
        name = type(self).__name__
        check_clip(group.get("clip_in_backward"), bool(group.get("step_in_backward")))
        refusals = {
            "closure": kind == "closure" and f"{name}'s step drives its own loop over every gradient",
            "skip_nonfinite=True": bool(group.get("skip_nonfinite"))
            and "skipping a step needs every gradient checked before any parameter changes",
            "differentiable=True": bool(group.get("differentiable")) and "the step must run under autograd",
        }
        for option, reason in refusals.items():
            if reason:
                raise ValueError(f"{name}(step_in_backward=True) cannot be combined with {option}: {reason} "
                                 "(step_in_backward updates each parameter as soon as its gradient exists)")

    def accumulating(self) -> contextlib.AbstractContextManager[None]:
        """With ``step_in_backward=True``: a backward inside this context only accumulates gradients; the
        backward of the last micro-batch, outside it, updates the parameters::

            for i, batch in enumerate(micro_batches):
                with optimizer.accumulating() if i < len(micro_batches) - 1 else contextlib.nullcontext():
                    loss_fn(model(batch)).backward()
            optimizer.step()
        """
        return self._backward.accumulate()

    # ---- what a subclass defines -------------------------------------------------------------------
    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        """The state tensors a parameter starts with (created with ``*_like(p)``). Default: none."""
        return {}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        """One step of the algorithm, in place on ``p`` and ``state``.

        ``p`` and ``grad`` are tensors (per-tensor path), TensorLists (multi-tensor path, elementwise math),
        flat-buffer stand-ins (fused path) or same-shape tensors stacked on a leading dimension (multi-tensor
        path, tensorwise math with ``batched_update``); ``grad`` is already negated under ``maximize``;
        complex tensors arrive as real views.
        """
        raise NotImplementedError(f"{type(self).__name__} must define update(p, grad, state, hp)")

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        """Per-step numbers computed eagerly before ``update``, which reads them as ``hp.<name>``.

        Runs once per batch (the parameters of a batch share their step and ``scalar_state`` values) with
        Python numbers in ``hp``; it may advance per-parameter scalar state in place (NAdam's ``mu_product``)
        and return values to branch on (booleans become static flags of the fused step). Default: none.
        """
        return {}

    def group_scalars(self, group: dict[str, Any]) -> dict[str, Any]:
        """Per-group numbers advanced once per step, before any update of the group, which reads them as
        ``hp.<name>`` (Schedule-Free's averaging weight). Runs for every group at every step taken, with or
        without gradients, and may write counters into the group (saved with the state dict). Default: none."""
        return {}

    def check_group(self, group: ChainMap[str, Any], *, at_step: bool) -> None:
        """Refuse a group's options torch refuses (checked when the group is added and at every step). Default:
        nothing beyond the constructor's checks."""

    def check_param(self, p: Tensor) -> None:
        """Refuse a parameter or gradient this algorithm cannot take (torch's errors); called before state."""
        if p.grad.is_sparse and not self.supports_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")

    def creates_state_in_update(self, hp: Hyper) -> bool:
        """Whether ``update`` assigns state on a parameter's first step (SGD's momentum buffer).

        Such a first step runs per tensor on the fused path, since compiled steps work on existing state.
        """
        return False

    # ---- the engine --------------------------------------------------------------------------------
    def __setstate__(self, state: dict[str, Any]) -> None:
        # load_state_dict on this optimizer (not unpickling a new one): the gradient hooks of the old runners
        # would go on firing: the fused runner's into its old buffers, the in-backward step with stale settings
        previous_fused, previous_backward = self.__dict__.get("_fused"), self.__dict__.get("_backward")
        if previous_fused is not None:
            previous_fused.close()
        if previous_backward is not None:
            previous_backward.detach()
        super().__setstate__(state)
        self._fused = FusedRunner(self)  # flat buffers and compiled-step caches are rebuilt after unpickling
        self._fold = None
        self._backward = InBackward(self)
        if previous_backward is not None:  # a wrapper's set-up (WeightEMA's) stays registered
            self._backward.on_start = previous_backward.on_start
        self._stored_as = {}
        for group in self.param_groups:
            if group.get("step_in_backward"):
                self._backward.attach(group["params"])
        self._inv_scale = None
        self._step_supports_amp_scaling = any(group.get("fused") or group.get("step_in_backward")
                                              for group in self.param_groups)
        # Groups saved by torch.optim or by an older ravine may lack options this class has: they are read
        # through the defaults (options()), never written into the groups, so a state dict saves as it loaded.
        if not self.step_counter:
            return
        for param_state in self.state.values():
            step = param_state.get("step") if isinstance(param_state, dict) else None
            if step is not None and not torch.is_tensor(step):
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype())

    def options(self, group: dict[str, Any]) -> ChainMap[str, Any]:
        """A parameter group read through this optimizer's defaults (writes go to the group).

        A group loaded from torch.optim's state dict, or an older ravine's, lacks some of this class's options
        (``skip_nonfinite``, ``eps_root``, …); they take their default values without being added to it.
        """
        return ChainMap(group, self.defaults)

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by ``skip_nonfinite`` (saved in the state dict with the param groups)."""
        return max((group.get("skipped_steps", 0) for group in self.param_groups), default=0)

    @staticmethod
    def compute_dtype(p: Tensor, group: dict[str, Any]) -> torch.dtype:
        """The dtype of ``p``'s update arithmetic (and of its state, unless :meth:`state_storage` says it is
        stored narrower), on every path.

        float32 for bfloat16/float16 parameters (computed in float32, rounded once into the parameter); the
        parameter's own dtype otherwise; a floating ``state_dtype`` wider than that (float64 state for float32
        parameters) computes in the state's dtype.
        """
        if not p.is_floating_point():
            return p.dtype
        base = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
        name = group.get("state_dtype")
        if name is None or name == "int8":
            return base
        wanted = getattr(torch, name)
        return wanted if wanted.itemsize > base.itemsize else base

    @classmethod
    def state_storage(cls, p: Tensor, group: dict[str, Any]) -> str | None:
        """How ``p``'s floating state is kept between steps when narrower than its compute dtype: ``"int8"``
        (blockwise 8-bit), the name of a narrow float (``"bfloat16"``: stochastically rounded), or None (kept in
        the compute dtype). See :mod:`ravine.engine.compact`."""
        name = group.get("state_dtype")
        if name is None or not (p.is_floating_point() or p.is_complex()):
            return None
        if name == "int8" or p.is_complex():  # complex: refused by _check_storage, never silently full size
            return name
        return name if getattr(torch, name).itemsize < cls.compute_dtype(p, group).itemsize else None

    def _new_state(self, p: Tensor, hp: Hyper, group: dict[str, Any]) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        if self.step_counter:
            device = p.device if self.step_on_param_device else None
            state["step"] = torch.zeros((), dtype=scalar_dtype(), device=device)
        dtype = self.compute_dtype(p, group)
        like = p if dtype == p.dtype else p.detach().to(dtype)  # state may start from p's values (Schedule-Free)
        state.update(self.init_state(like, hp))
        if group.get("kahan_sum") and p.dtype in LOW_PRECISION:
            state[eager.COMPENSATION] = torch.zeros_like(p, memory_format=torch.preserve_format)
        storage = self.state_storage(p, group)
        if storage is not None:
            stored: dict[str, Tensor] = {}
            compact.encode(state, stored, storage, p.shape, self.nonnegative_state, self.unencoded_state,
                           seed=0)
            return stored
        return state

    @property
    def unencoded_state(self) -> tuple[str, ...]:
        """State keys never stored compactly: the step counter, per-parameter scalars and precise state."""
        return ("step", *self.scalar_state, *self.precise_state, eager.COMPENSATION)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """torch's loading, except that floating state keeps this optimizer's state dtype.

        torch casts every floating state tensor to its parameter's dtype, which rounds the float32 state of
        bfloat16 parameters to bfloat16 on every resume; here such state is restored from the checkpoint's
        own values in the dtype :meth:`compute_dtype` gives.
        """
        super().load_state_dict(state_dict)
        self._stored_as = {}  # the groups are new, and their state is stored as their state_dtype says
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [(p, self.options(group)) for group in self.param_groups for p in group["params"]]
        for saved_id, (p, group) in zip(saved_ids, params, strict=False):
            dtype = self.compute_dtype(p, group)
            saved = state_dict["state"].get(saved_id, {})
            storage = self.state_storage(p, group)
            if storage is not None or any(compact.is_quantized(saved, key) for key in saved):
                # copies in the checkpoint's own dtypes (the optimizer must not write into the caller's dict)
                loaded = {key: value.to(p.device, copy=True) if torch.is_tensor(value) else value
                          for key, value in saved.items()}
                if "step" in saved:
                    loaded["step"] = self.state[p]["step"]  # placed and typed by torch's rules
                self.state[p] = self._stored_in(p, loaded, storage, dtype)
                continue
            for key, value in saved.items():
                if key in ("step", eager.COMPENSATION):
                    continue
                if torch.is_tensor(value) and value.is_floating_point() and dtype != p.dtype:
                    self.state[p][key] = value.to(device=p.device, dtype=dtype, copy=True)

    def _stored_in(self, p: Tensor, state: dict[str, Any], storage: str | None,
                   dtype: torch.dtype) -> dict[str, Any]:
        """``p``'s ``state`` in ``storage``: as it is when it already is (a checkpoint resumes bit for bit),
        otherwise decoded to ``dtype`` and encoded again (a float32 checkpoint resumed with ``state_dtype="int8"``,
        or ``state_dtype`` changed between steps). Returns a new dict when anything changed."""
        skip = self.unencoded_state
        if storage is not None and compact.storage_matches(state, storage, skip):
            return state
        work = compact.decode(state, p.shape, dtype, skip)
        if storage is None:
            return work
        stored: dict[str, Any] = {}
        compact.encode(work, stored, storage, p.shape, self.nonnegative_state, skip, seed=0)
        return stored

    def _follow_state_dtype(self, loaded_group: dict[str, Any], group: ChainMap[str, Any]) -> None:
        """Re-store a group's state when its ``state_dtype`` changed since the group's last step (a change
        takes effect at the next step, on every path: the fused path rebuilds its buffers from the new state).
        A dtype set by hand (``torch.bfloat16``) is checked and kept as its name, as the constructor does."""
        name = group["state_dtype"]
        if name is not None and not isinstance(name, str):  # a dtype set by hand, or by ZeRO's group sync
            name = loaded_group["state_dtype"] = check_state_dtype(name)
        before = self._stored_as.setdefault(id(loaded_group), name)
        if before == name:
            return
        check_state_dtype(name)  # a new value set by hand: a bad one is refused by name
        for p in group["params"]:
            if self.state.get(p):
                self.state[p] = self._stored_in(p, self.state[p], self.state_storage(p, group),
                                                self.compute_dtype(p, group))
        self._stored_as[id(loaded_group)] = name

    @eager_only  # a compiled training step calls this eagerly; fused=True is the compiled path
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it runs with
                gradients enabled, and its loss is returned.

        Inside a ``torch.compile``-d function this step runs eagerly (dynamo does not trace it), so compiled
        training loops get exactly the eager results; ``fused=True`` compiles the update itself. The body runs
        without gradients, unless the optimizer was built with ``differentiable=True`` (torch's rule).
        """
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
            return self._step(closure)

    def fold_average(self, averages: dict[Tensor, Tensor], weight: float, *, write_back: bool) -> None:
        """For the next step only: after the update, move each ``averages[p]`` towards ``p``,
        ``a ← a + weight·(p − a)``, then set ``p ← a`` if ``write_back`` (see :mod:`ravine.engine.averaging`).

        For wrappers that keep averages of the weights (:class:`~ravine.Lookahead`, :class:`~ravine.WeightEMA`).
        Every parameter in ``averages`` is averaged, with or without a gradient this step; a step that is skipped
        (GradScaler overflow, ``skip_nonfinite``) averages nothing. On the fused path the averaging runs inside
        the step's kernel, and the values of ``averages`` are replaced by views of a flat buffer.
        """
        self._fold = Fold(averages, weight, write_back)

    def _step(self, closure: Callable[[], Any] | None) -> Any:
        fold, self._fold = self._fold, None
        try:
            self._fused.fold, self._fused.folded = fold, set()
            return self._step_all(closure, fold)
        finally:
            self._fused.fold = None

    def _step_all(self, closure: Callable[[], Any] | None, fold: Fold | None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if getattr(self, "grad_scale", None) is not None and any(
                group.get("step_in_backward") for group in self.param_groups):
            raise RuntimeError(f"{type(self).__name__}(step_in_backward=True) cannot be used with GradScaler: the "
                               "parameters were already updated during backward, before the scaler could check "
                               "the gradients for overflow (use bfloat16 autocast, which needs no scaler)")
        found_inf = getattr(self, "found_inf", None)  # set by GradScaler when _step_supports_amp_scaling
        if found_inf is not None and bool(found_inf.sum().item()):
            return loss  # overflow: no parameter, state or step count changes
        grad_scale = getattr(self, "grad_scale", None)
        self._inv_scale = None if grad_scale is None else grad_scale.double().reciprocal().float()
        skipping = any(self.options(group)["skip_nonfinite"] for group in self.param_groups)
        if skipping and self._skip_nonfinite_step():
            return loss
        for group in self.param_groups:
            self._step_group(group)
        self._backward.finish_step(self)
        self._inv_scale = None
        if fold is not None:  # the averages the fused kernels did not take care of
            rest = [p for p in fold.averages if id(p) not in self._fused.folded]
            lerp_averages([fold.averages[p] for p in rest], rest, fold.weight, fold.write_back)
        return loss

    def _group_hyper(self, loaded_group: dict[str, Any], group: ChainMap[str, Any],
                     per_group: dict[str, Any] | None = None) -> Hyper:
        """A group's hyperparameters for this step, with its once-per-step values (group_scalars)."""
        if per_group is None:
            per_group = self.group_scalars(group)
        self.check_group(group, at_step=True)
        hp = Hyper(group)
        for key, value in per_group.items():
            setattr(hp, key, value)
        hp.extra = per_group
        hp.state_seed = self._state_seed(loaded_group, group)
        return hp

    def _update_one(self, p: Tensor, loaded_group: dict[str, Any], group: ChainMap[str, Any], hp: Hyper) -> None:
        """One parameter's update, as soon as backward produced its gradient (step_in_backward)."""
        self._follow_state_dtype(loaded_group, group)
        self.check_param(p)
        self._check_storage(p, group)
        self._ensure_state(p, hp, group)
        update_one(self, p, group, hp)

    def _ensure_state(self, p: Tensor, hp: Hyper, group: ChainMap[str, Any]) -> None:
        """Create ``p``'s state before its first update (none is stored for an algorithm that keeps none)."""
        if not self.state.get(p):
            new_state = self._new_state(p, hp, group)
            if new_state:
                self.state[p] = new_state

    def ensure_states(self, params: list[Tensor], hp: Hyper, group: ChainMap[str, Any]) -> None:
        """:meth:`_ensure_state` for each of ``params``."""
        for p in params:
            self._ensure_state(p, hp, group)

    @staticmethod
    def _state_seed(loaded_group: dict[str, Any], group: ChainMap[str, Any]) -> int:
        """The step number stochastic rounding of narrow-float state hashes (saved with the group, so a resumed
        run rounds as the uninterrupted one); 0 where nothing is rounded stochastically."""
        name = group["state_dtype"]
        if name is None or name == "int8":
            return 0
        loaded_group["state_rounding_step"] = loaded_group.get("state_rounding_step", 0) + 1
        return loaded_group["state_rounding_step"]

    def _check_storage(self, p: Tensor, group: ChainMap[str, Any]) -> None:
        """Refuse parameters whose state cannot be stored compactly (yet), naming the option."""
        storage = self.state_storage(p, group)
        if storage is None:
            return
        reason = None
        if p.is_complex():
            reason = "complex parameters"
        elif type(p) not in (Tensor, torch.nn.Parameter):
            reason = f"{type(p).__name__} parameters (FSDP2 shards)"
        if reason is not None:
            raise ValueError(f"{type(self).__name__}(state_dtype={group['state_dtype']!r}) stores state "
                             f"compactly, which does not support {reason}: leave state_dtype unset for them (a "
                             "parameter group of their own)")

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
                stacklevel=_caller_stacklevel(),
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

    def _step_group(self, loaded_group: dict[str, Any]) -> None:
        """Create missing state, then hand the group to the runner its flags and kind of math call for."""
        group = self.options(loaded_group)
        if self._step_last_plan(loaded_group, group):
            return
        params = [p for p in group["params"] if p.grad is not None]
        hp = self._backward.hyper.get(id(loaded_group))  # this step began in backward (step_in_backward)
        if hp is None:
            per_group = self.group_scalars(group)
            if not params:
                return
            hp = self._group_hyper(loaded_group, group, per_group)
        if not params:
            return
        has_sparse = False
        self._follow_state_dtype(loaded_group, group)
        checks = "check_param" in self.overrides or group["state_dtype"] is not None
        for p in params:
            if checks or p.grad.is_sparse:  # the base check refuses only sparse gradients
                self.check_param(p)
                self._check_storage(p, group)
                has_sparse = has_sparse or p.grad.is_sparse
        if group["fused"] and not has_sparse and not group["differentiable"]:
            self._fused.step(group, params, hp)  # creates missing state unless its last plan still holds
            return
        self.ensure_states(params, hp, group)
        if group["differentiable"]:
            eager.unscale(params, self._inv_scale)
            for p in params:
                eager.run_differentiable(self, p, group, hp)
            return
        eager.unscale(params, self._inv_scale)
        kind = self.kind_of(group)
        if kind == "tensorwise":  # whole-tensor math on FSDP2 shards: each tensor gathered on one owner rank
            shards = [p for p in params if sharded.shard_dim(p) is not None]
            if shards:
                sharded.run_on_owners(self, shards, group, hp)
                params = [p for p in params if sharded.shard_dim(p) is None]
                if not params:
                    return
            if group["ddp_split"]:  # replicated parameters: each rank updates its share, then broadcasts it
                sharded.run_split(self, params, lambda owned: self._run_paths(owned, group, hp, kind, has_sparse))
                return
        self._run_paths(params, group, hp, kind, has_sparse)

    def _step_last_plan(self, loaded_group: dict[str, Any], group: ChainMap[str, Any]) -> bool:
        """A fused group's step over its last step's flat buffers, when nothing that decides them changed
        (:meth:`FusedRunner.ready <ravine.engine.fused.FusedRunner.ready>`): what :meth:`_step_group` would do,
        without its passes over the parameters. False, having done nothing else, where it does not apply."""
        if (not group["fused"] or group["differentiable"] or group["step_in_backward"]
                or "check_param" in self.overrides or id(loaded_group) in self._backward.hyper):
            return False
        self._follow_state_dtype(loaded_group, group)
        if group["state_dtype"] is not None:  # compact state: checked parameter by parameter
            return False
        flats = self._fused.ready(group)
        if flats is None:
            return False
        self._fused.run_plan(flats, group, self._group_hyper(loaded_group, group), grads_in_place=True)
        return True

    def _run_paths(self, params: list[Tensor], group: ChainMap[str, Any], hp: Hyper, kind: str,
                   has_sparse: bool) -> None:
        """The per-tensor or multi-tensor path (the group's flags, or the default) over ``params``."""
        foreach = group["foreach"]
        if foreach is None:
            foreach = eager.default_to_foreach(params) and "multi-tensor" in PATHS_BY_KIND[kind]
            if not foreach and kind == "elementwise" and not has_sparse:
                eager.run_default(self, params, group, hp)
                return
        if not foreach or has_sparse:
            eager.run_each(self, params, group, hp)
        elif kind == "tensorwise":
            for batch in eager.batches(self, params, by_shape=True):
                if self.batched_update and len(batch) > 1 and not batch[0].is_complex():
                    eager.run_stacked(self, batch, group, hp)
                else:
                    eager.run_each(self, batch, group, hp)
        else:
            for batch in eager.batches(self, params, chunked=True):
                eager.run(self, batch, group, hp)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside ravine and torch: the user's line
    that called ``step()`` (torch wraps ``step`` in decorators, so a fixed level lands inside torch)."""
    internal = (os.path.dirname(os.path.dirname(__file__)), os.path.dirname(torch.__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    return level

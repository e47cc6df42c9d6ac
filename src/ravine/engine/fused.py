"""The fused runner: an algorithm's own ``update``, compiled once per (device, dtype) batch over flat buffers.

``torch.compile`` (inductor: C++/OpenMP on CPU, Triton on CUDA) traces the very ``update`` method the eager
paths run (:mod:`ravine.engine.tracing` has the stand-ins it sees) over one flat buffer per parameter batch,
gradient and state key (:mod:`ravine.engine.flat`). Compile cost therefore does not grow with the number of
tensors, and one kernel streams each buffer once. Only elementwise math is fused: the optimizer refuses
``fused=True`` for any other kind at construction.

:class:`FusedRunner` owns everything this path keeps between steps — flat buffers, cached hyperparameter
tensors, which parameters already took their first (eager) step — so the optimizer's contract and step driver
know nothing about compilation.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import shutil
from collections import ChainMap
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from ravine.engine import compact, eager, local_shards
from ravine.engine.averaging import Fold
from ravine.engine.flat import BLOCK, GRAD_OF, FlatGroup, SegmentLayout, whole_layout
from ravine.engine.local_shards import ShardBatch
from ravine.engine.tracing import compiled_update
from ravine.engine.views import Hyper, StateView, merged

if TYPE_CHECKING:
    from ravine.engine.optimizer import Optimizer

# Group entries that choose how the engine runs, not what the algorithm computes.
ENGINE_KEYS = frozenset({"params", "param_names", "foreach", "fused", "skip_nonfinite", "state_dtype",
                         "skipped_steps", "initial_lr", "step_in_backward", "clip_in_backward",
                         "previous_grad_norm", "state_rounding_step", "kahan_sum", "ddp_split"})


# ---- availability -----------------------------------------------------------------------------------
def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build the fused step on ``device`` here, or None if it can."""
    if device.type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(name and shutil.which(name) for name in compilers):
            return "torch.compile needs a C++ compiler for CPU kernels and none was found (set CXX or install g++)"
        return None
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:  # pragma: no cover - very old torch
            return "this torch build cannot tell whether Triton is available"
        return None if has_triton() else "torch.compile needs Triton for CUDA kernels (pip install triton)"
    return f"the fused step is built for CPU and CUDA, not {device.type!r}"


# One code object (tracing.fused_update) serves every algorithm, so each combination of algorithm, options,
# dtype and path is one cached graph of it. Past dynamo's limit the step would run uncompiled, silently (a
# process trying many optimizers, the test suite: 128 graphs were reached); dynamo finds the matching graph
# first for the optimizer in use, so a high limit costs nothing per step.
RECOMPILE_LIMIT = 2048
CHUNK = 1 << 20  # elements per call of the one-tensor compiled step (a multiple of the 8-bit block)


def _group_id(group: dict[str, Any]) -> int:
    """The id of the param group itself, also when it is read through the optimizer's defaults (a ChainMap)."""
    return id(group.maps[0]) if isinstance(group, ChainMap) else id(group)


def same_number(held: Any, value: Any) -> bool:
    """Would a tensor filled with ``held`` hold ``value`` too? Equal, of one type, and the same zero (a NaN never
    equals itself, so it is always refilled)."""
    return (type(held) is type(value) and held == value
            and (value != 0 or math.copysign(1.0, held) == math.copysign(1.0, value)))


class Plan(NamedTuple):
    """A param group's last fused step, reused while it holds: ``key`` (the group, whether its buffers are laid
    out for reductions, the parameters stepped), their ``flats``, the group's parameters at the time, and those
    of them that had no gradient."""

    key: tuple[Any, ...]
    flats: list[FlatGroup | ShardBatch]
    group_params: tuple[Tensor, ...]
    without_grad: tuple[Tensor, ...]


class FusedRunner:
    """The fused path of one optimizer: flat buffers, cached hyperparameter tensors, compiled steps."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.flat_groups: dict[tuple[int, ...], FlatGroup | ShardBatch] = {}  # by the ids of their parameters
        self.seen: set[int] = set()  # parameters that took their (eager) state-creating first step
        # hyperparameters as 0-d tensors, with the number each holds (refilled only when it changes)
        self.scalars: dict[tuple[Any, ...], tuple[Tensor, Any]] = {}
        # per param group: the parameters of its last step and their flat groups, reused while intact
        self.plans: dict[int, Plan] = {}
        self.fold: Fold | None = None  # the wrapper's averaging for this step (Optimizer.fold_average)
        self.folded: set[int] = set()  # parameters whose average this step's kernels updated
        self.layouts: dict[tuple[int, torch.device], SegmentLayout] = {}  # one-tensor layouts of run_each, by size

    def step(self, group: dict[str, Any], params: list[Tensor], hp: Hyper) -> None:
        """Compiled steps over flat buffers; state-creating first steps and odd tensors run per tensor.

        The batches of a step are remembered: when the next step updates the same parameters and every flat
        group is intact, they are reused without regrouping (what a model of many small tensors would
        otherwise pay per tensor at every step)."""
        opt = self.optimizer
        reductions = opt.needs_reductions(group)  # buffers laid out for them, or not: part of the plan
        key = (_group_id(group), reductions, *map(id, params))
        plan = self.plans.get(key[0])
        if plan is not None and plan.key == key and all(flat.intact(opt.state) for flat in plan.flats):
            self.run_plan(plan.flats, group, hp)
            return
        opt.ensure_states(params, hp, group)  # a parameter new to this group, or state dropped by a reload
        lazy = opt.creates_state_in_update(hp)
        flats: list[FlatGroup | ShardBatch] = []
        for batch in eager.batches(opt, params):
            if self._shards_fusable(batch, group, lazy, reductions):  # FSDP2 shards: the kernel on local tensors
                shards = self._batch(batch, ShardBatch)
                self._run(shards, group, hp)
                flats.append(shards)
                continue
            # a first step that creates state, DTensor, complex or strided tensors: eager
            if not all(self._fusable(p, lazy) for p in batch):
                eager.unscale(batch, opt._inv_scale)
                eager.run_each(opt, batch, group, hp)
                self.seen.update(id(p) for p in batch)
                flats = []
                continue
            if opt.state_storage(batch[0], group) == "int8":  # blocks belong to a tensor: one kernel each
                self.run_each(batch, group, hp)
                flats = []
                continue
            flat = self._batch(batch, FlatGroup, aligned=reductions)
            self._run(flat, group, hp)
            flats.append(flat)
        if flats and sum(len(flat.params) for flat in flats) == len(params):  # every parameter fused
            stepped = set(key[2:])
            self.plans[key[0]] = Plan(key, flats, tuple(group["params"]),
                                      tuple(p for p in group["params"] if id(p) not in stepped))
        else:
            self.plans.pop(key[0], None)

    def close(self) -> None:
        """Stop routing gradients into this runner's buffers, which a new runner replaces (``load_state_dict``):
        the parameters stay in them until it regroups them. Without this, autograd would go on accumulating into
        the old gradient buffer, keeping it alive, and every step would copy it into the new one."""
        for batch in self.flat_groups.values():
            batch.release(keep={id(p) for p in batch.params})
        self.flat_groups.clear()
        self.plans.clear()

    def ready(self, group: dict[str, Any]) -> list[FlatGroup | ShardBatch] | None:
        """The flat groups of ``group``'s last step, if this step can run them as they are: the group holds the
        same parameters, the same ones have gradients, each of those is the view of the flat gradient buffer
        autograd accumulated into, and every buffer is intact. None otherwise (:meth:`step` then regroups).

        Equivalent to :meth:`step`'s own reuse of a plan, in fewer passes over the parameters, each a C loop: after
        a large model's kernel has streamed its buffers, each pass touches every tensor's metadata out of cache
        (``benchmarks/fused_call_overhead.py``, ``benchmarks/fused_sgd_overhead.py``)."""
        plan = self.plans.get(_group_id(group))
        if plan is None or plan.key[1] != self.optimizer.needs_reductions(group):
            return None
        params = group["params"]
        if len(params) != len(plan.group_params) or not all(map(operator.is_, params, plan.group_params)):
            return None
        if any(map(operator.is_not, map(GRAD_OF, plan.without_grad), itertools.repeat(None))):
            return None
        state = self.optimizer.state
        for flat in plan.flats:
            if not isinstance(flat, FlatGroup) or not flat.grads_in_place() or not flat.intact(state):
                return None
        return plan.flats

    def run_plan(self, flats: list[FlatGroup | ShardBatch], group: dict[str, Any], hp: Hyper, *,
                 grads_in_place: bool = False) -> None:
        """One step over a plan's flat groups; ``grads_in_place``: :meth:`ready` found every gradient in its
        buffer already."""
        for flat in flats:
            self._run(flat, group, hp, grads_in_place=grads_in_place)

    def _batch(self, params: list[Tensor], kind: type[FlatGroup] | type[ShardBatch], aligned: bool = False) -> Any:
        """A batch's buffers (a :class:`FlatGroup`, ``aligned`` for whole-tensor reductions; for DTensor
        parameters, a :class:`ShardBatch` of their state): the existing ones if intact, else new, releasing any
        the new ones overlap."""
        opt = self.optimizer
        key = tuple(id(p) for p in params)
        batch = self.flat_groups.get(key)
        if batch is None or type(batch) is not kind or batch.aligned != aligned or not batch.intact(opt.state):
            for other in [k for k in self.flat_groups if set(k) & set(key)]:
                self.flat_groups.pop(other).release(keep=set(key))
            options = {"aligned": True} if aligned else {}
            batch = self.flat_groups[key] = kind(params, eager.states_of(opt, params), opt.scalar_state,
                                                 count_steps=opt.step_counter, **options)
        return batch

    def _shards_fusable(self, batch: list[Tensor], group: dict[str, Any], lazy: bool, reductions: bool) -> bool:
        """Can a batch of DTensor parameters take the compiled step on their local shards? Not when the update
        reduces over whole tensors (``reductions``: a shard's sum is not the tensor's) or keeps compact state."""
        opt = self.optimizer
        if not local_shards.is_dtensor(batch[0]) or reductions:
            return False
        return all(local_shards.fusable(p) and opt.state_storage(p, group) is None
                   and (not lazy or id(p) in self.seen or bool(opt.state.get(p))) for p in batch)

    def _fusable(self, p: Tensor, lazy: bool) -> bool:
        """Can ``p`` take the compiled step: a plain, floating, contiguous tensor whose state exists (``lazy``:
        the algorithm creates state in its first update, which runs per tensor)?"""
        return (type(p) in (Tensor, torch.nn.Parameter) and p.is_floating_point() and p.is_contiguous()
                and (not lazy or id(p) in self.seen or bool(self.optimizer.state.get(p))))

    def step_one(self, p: Tensor, group: dict[str, Any], hp: Hyper) -> None:
        """One parameter's compiled step (step in backward); a first step that creates state, or an odd tensor,
        runs per tensor."""
        opt = self.optimizer
        if not self._fusable(p, opt.creates_state_in_update(hp)) or not p.grad.is_contiguous():
            eager.unscale([p], opt._inv_scale)
            eager.run_each(opt, [p], group, hp)
            self.seen.add(id(p))
            return
        self.run_each([p], group, hp)

    def run_each(self, params: list[Tensor], group: dict[str, Any], hp: Hyper) -> None:
        """The compiled step over one tensor at a time (one graph serves every size): for state kept in 8-bit
        blocks, which belong to their tensor. Parameters keep their own storage."""
        opt = self.optimizer
        eager.unscale(params, opt._inv_scale)
        skip = ("step", *opt.scalar_state)  # not flattened: the counter and per-parameter scalars
        reductions = opt.needs_reductions(group)
        for p in params:
            state = opt.state[p]
            if opt.step_counter:
                hp.step = state["step"].item() + 1
            extra = {**hp.extra, **opt.step_scalars(StateView([state], is_complex=False, batched=False), hp)}
            quantized = {k: (v, state[k + compact.ABSMAX]) for k, v in state.items()
                         if compact.is_quantized(state, k)}
            maxima = {k + compact.ABSMAX for k in quantized}
            plain = {k: v.view(-1) for k, v in state.items() if k not in skip and k not in quantized
                     and k not in maxima and torch.is_tensor(v) and v.shape == p.shape}
            if reductions:  # whole-tensor reductions: the tensor in one call
                layout = self.layouts.get((p.numel(), p.device))
                if layout is None:
                    layout = self.layouts[(p.numel(), p.device)] = whole_layout(p.numel(), p.device)
                self._compiled(p.view(-1), p.grad.view(-1), plain, group, hp, extra, layout,
                               quantized=quantized or None, aligned=p.numel() % compact.BLOCK == 0)
            else:  # elementwise: large tensors in chunks of whole blocks, so the kernel's temporaries stay small;
                # the blocks a tensor fills exactly in aligned calls, a partial last block in a call of its own
                param, grad, numel = p.view(-1), p.grad.view(-1), p.numel()
                body = numel - numel % compact.BLOCK
                bounds = [(start, min(start + CHUNK, body)) for start in range(0, body, CHUNK)]
                for start, stop in bounds + ([(body, numel)] if body < numel else []):
                    chunk = {k: v[start:stop] for k, v in plain.items()}
                    first, last = start // compact.BLOCK, -(-stop // compact.BLOCK)
                    codes = {k: (c[first:last], a[first:last]) for k, (c, a) in quantized.items()}
                    self._compiled(param[start:stop], grad[start:stop], chunk, group, hp, extra, None,
                                   quantized=codes or None, aligned=stop <= body)
            if opt.step_counter:
                state["step"] += 1

    def _run(self, flat: FlatGroup | ShardBatch, group: dict[str, Any], hp: Hyper, *,
             grads_in_place: bool = False) -> None:
        opt = self.optimizer
        hp.step = flat.steps[0].item() + 1 if flat.steps is not None else None
        # The eager per-step hook (per-parameter scalars such as NAdam's mu_product) runs before the kernel.
        extra = {**hp.extra, **opt.step_scalars(StateView(flat.states, is_complex=False, batched=True), hp)}
        if isinstance(flat, ShardBatch):  # one call per run of local shards lying end to end
            pieces = flat.pieces()
            if pieces:
                self._compiled_pieces(pieces, group, hp, extra, None)
        else:
            if not grads_in_place:
                flat.collect_grads()
            average = None
            fold = self.fold
            if fold is not None and all(p in fold.averages for p in flat.params):
                average = flat.attach_average(fold.averages)
                self.folded.update(map(id, flat.params))
                extra["average_weight"] = fold.weight
            param, grad, state, layout = flat.param_buffer, flat.grad_buffer, flat.state_buffers, None
            if flat.aligned:  # laid out for reductions: (rows, BLOCK) matrices, shaped so before tracing, since
                # a view of a buffer of symbolic length leaves inductor index arithmetic it cannot vectorise
                layout = flat.layout()
                param, grad, average = (None if b is None else b.view(-1, BLOCK) for b in (param, grad, average))
                state = {key: buffer.view(-1, BLOCK) for key, buffer in state.items()}
            self._compiled(param, grad, state, group, hp, extra, layout, average,
                           write_back=fold is not None and fold.write_back)
        if flat.steps is not None:  # counted only once the step has run
            flat.steps.add_(1)

    def _compiled(self, param: Tensor, grad: Tensor, state: dict[str, Tensor], group: dict[str, Any], hp: Hyper,
                  extra: dict[str, Any], layout: SegmentLayout | None, average: Tensor | None = None, *,
                  write_back: bool = False, quantized: dict[str, tuple[Tensor, Tensor]] | None = None,
                  aligned: bool = False) -> None:
        """Call the compiled step with this group's hyperparameters as cached tensors."""
        self._compiled_pieces([(param, grad, state)], group, hp, extra, layout, average, write_back=write_back,
                              quantized=quantized, aligned=aligned)

    def _compiled_pieces(self, pieces: list[tuple[Tensor, Tensor, dict[str, Tensor]]], group: dict[str, Any],
                         hp: Hyper, extra: dict[str, Any], layout: SegmentLayout | None,
                         average: Tensor | None = None, *, write_back: bool = False,
                         quantized: dict[str, tuple[Tensor, Tensor]] | None = None, aligned: bool = False) -> None:
        """The compiled step over each ``(param, grad, state)`` piece (same device and dtype), with the
        hyperparameters prepared once."""
        opt = self.optimizer
        param = pieces[0][0]
        storage = opt.state_storage(param, group)
        if storage is not None:
            extra = {**extra, "state_seed": hp.state_seed}
        # Scalar arithmetic (bias corrections, lr/bc) in float64, as the eager paths do it in Python floats.
        device = param.device
        scalar_type = torch.float32 if device.type == "mps" else torch.float64
        scalars, statics, flags = self._hyper(group, hp.step, extra, device, scalar_type)
        statics["compute_dtype"] = str(opt.compute_dtype(param, group)).removeprefix("torch.")
        if storage is not None:
            statics["state_storage"] = storage
            statics["nonnegative_state"] = opt.nonnegative_state
        if quantized:
            statics["state_aligned"] = aligned
        if average is not None:
            statics["average_write_back"] = write_back
        update, compiled = type(opt).update, compiled_update(reductions=layout is not None)
        # dynamo's recompile limits raised around the calls, as config.patch would (at half its cost per step);
        # a limit the user set higher stays
        config = torch._dynamo.config
        saved = config.recompile_limit, config.accumulated_recompile_limit
        config.recompile_limit = max(saved[0], RECOMPILE_LIMIT)
        config.accumulated_recompile_limit = max(saved[1], RECOMPILE_LIMIT * 4)
        try:
            for param, grad, state in pieces:  # the step pops its entries: each call gets its own dicts
                compiled(update, opt, param, grad, state, dict(scalars), dict(statics), flags, layout, average,
                         quantized)
        finally:
            config.recompile_limit, config.accumulated_recompile_limit = saved

    def _hyper(
        self, group: dict[str, Any], step: float | None, extra: dict[str, Any], device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
        """Numbers as cached 0-d tensors (filled in place: no recompiles), flags for 0/1 branches."""
        opt = self.optimizer
        scalars: dict[str, Any] = {}
        statics: dict[str, Any] = {}
        flags: dict[str, bool] = {}

        group_id = _group_id(group)

        def as_tensor(name: str, value: Any) -> Tensor:
            if torch.is_tensor(value):
                flags[f"{name}==0"] = flags[f"{name}==1"] = False  # reading it would cost a host sync
                return value.reshape(()).to(device=device, dtype=dtype)
            flags[f"{name}==0"], flags[f"{name}==1"] = value == 0, value == 1
            key = (group_id, name, device, dtype)
            cached, held = self.scalars.get(key, (None, None))
            if cached is None:
                cached = torch.empty((), dtype=dtype, device=device)
            elif same_number(held, value):
                return cached
            self.scalars[key] = (cached, value)
            return cached.fill_(value)

        entries = merged(group)
        if step is not None:
            entries["step"] = step
        entries["grad_sign"] = -1.0 if group["maximize"] else 1.0
        entries["inv_scale"] = 1.0 if opt._inv_scale is None else opt._inv_scale
        entries.update(extra)
        for name, value in entries.items():
            # Only the hyperparameters this class declares (plus step, the step_scalars values and the two
            # engine scalars) enter the graph; keys that users or wrappers add to a group (Lookahead's
            # counter, tags) stay out of it.
            declared = name in opt.defaults or name in extra or name in ("step", "grad_sign", "inv_scale")
            if name in ENGINE_KEYS or name == "maximize" or not declared:
                continue
            if isinstance(value, bool) or value is None or isinstance(value, str):
                statics[name] = value
            elif isinstance(value, tuple):
                scalars[name] = tuple(as_tensor(f"{name}[{i}]", v) for i, v in enumerate(value))
            else:
                scalars[name] = as_tensor(name, value)
        return scalars, statics, flags

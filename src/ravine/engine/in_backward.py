"""Step in backward: each parameter is updated as soon as autograd has accumulated its gradient, and the
gradient is freed at once, so the whole set of gradients is never held (``step_in_backward=True``).

The update of a parameter is the one its group's path runs in an ordinary step (per tensor; on the fused path
the compiled step over that one tensor), so with no clipping the parameters after ``backward()`` equal those
an ordinary ``step()`` would give. ``optimizer.step()`` then completes the step: it updates any gradient the
hooks did not take (one assigned by hand, or left by an accumulating backward), runs the optimizer's hooks and
lets schedulers move on; it never updates a parameter twice.

* **Accumulation**: inside ``with optimizer.accumulating():`` the hooks do nothing and gradients accumulate as
  usual; the backward of the last micro-batch, outside it, updates.
* **Clipping** cannot use this step's global norm, which is only known once every gradient exists. Two sound
  rules, chosen with ``clip_in_backward``: ``("per_tensor", max_norm)`` clips each gradient by its own norm;
  ``("previous_global_norm", max_norm)`` scales every gradient by ``min(1, max_norm / n)`` where ``n`` is the
  global norm of the *previous* step's gradients (as LOMO, Lv et al. 2023, does; the first step is not
  clipped). That norm is saved with the parameter groups (``previous_grad_norm``).
* **Refused**, because a step must see every gradient before it changes any parameter: ``skip_nonfinite``
  (refused at construction), GradScaler (its ``step`` raises), and algorithms that drive their own loop
  (LBFGS); and data parallelism (several processes, or FSDP2's DTensor parameters), whose reduction of the
  gradients across ranks comes after the hook.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ravine.engine import eager
from ravine.engine.views import Hyper

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ravine.engine.optimizer import Optimizer

CLIP_RULES = ("per_tensor", "previous_global_norm")


def check_single_process(p: Tensor) -> None:
    """Refuse data parallelism: the hook would update with this process's own gradient, before DDP or FSDP2
    average it across ranks (and DDP's buckets hold every gradient anyway, so nothing would be saved)."""
    import torch.distributed as dist

    if type(p) not in (Tensor, torch.nn.Parameter) or (
            dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        raise RuntimeError(
            "step_in_backward=True updates each parameter with this process's gradient as backward produces "
            "it, before DDP or FSDP2 can average it across ranks: the ranks would drift apart. Under data "
            "parallelism use the ordinary step (state_dtype='int8' saves state memory there)")


def check_clip(clip: Any, step_in_backward: bool) -> None:
    """``clip_in_backward``: None, or (rule, max_norm) with a rule of :data:`CLIP_RULES` and max_norm > 0."""
    if clip is None:
        return
    if not step_in_backward:
        raise ValueError(f"clip_in_backward={clip!r} clips gradients as backward produces them: it needs "
                         "step_in_backward=True (otherwise clip with ravine.grads.clip_grad_norm_ before step())")
    if (not isinstance(clip, (tuple, list)) or len(clip) != 2 or clip[0] not in CLIP_RULES
            or isinstance(clip[1], bool) or not isinstance(clip[1], (int, float)) or not clip[1] > 0):
        raise ValueError(f"Invalid clip_in_backward: {clip!r} (expected ('per_tensor', max_norm) or "
                         "('previous_global_norm', max_norm) with max_norm > 0)")


class InBackward:
    """The gradient hooks of one optimizer and what they share during a backward pass."""

    def __init__(self, optimizer: Optimizer) -> None:
        self._optimizer = weakref.ref(optimizer)  # parameters hold the hooks: no cycle through the optimizer
        self.handles: dict[int, Any] = {}
        self.group_index: dict[int, int] = {}  # id(parameter) -> position of its group (see _group_of)
        self.accumulating = False
        self.hyper: dict[int, Hyper] = {}  # per group, for the step in progress
        self.norm_sq: Tensor | None = None  # squared global norm of this step's gradients (for the next one)
        self.on_start: list[Callable[[], None]] = []  # run before a step's first update (a wrapper's set-up)
        self.started = False

    def attach(self, params: list[Tensor]) -> None:
        for p in params:
            if p.requires_grad and id(p) not in self.handles:
                self.handles[id(p)] = p.register_post_accumulate_grad_hook(self._hook)

    def detach(self) -> None:
        for handle in self.handles.values():
            handle.remove()
        self.handles.clear()

    def _group_of(self, optimizer: Optimizer, p: Tensor) -> dict[str, Any] | None:
        """``p``'s parameter group. The index (parameter -> group position) is rebuilt when groups are added;
        the group itself is read from ``param_groups`` each time, since load_state_dict replaces the dicts."""
        groups = optimizer.param_groups
        if len(self.group_index) != sum(len(group["params"]) for group in groups):
            self.group_index = {id(q): i for i, group in enumerate(groups) for q in group["params"]}
        index = self.group_index.get(id(p))
        return None if index is None else groups[index]

    @torch.no_grad()
    def _hook(self, p: Tensor) -> None:
        optimizer = self._optimizer()
        if optimizer is None or self.accumulating or p.grad is None:
            return
        loaded_group = self._group_of(optimizer, p)
        if loaded_group is None or not loaded_group.get("step_in_backward"):
            return
        if not self.started:
            check_single_process(p)
            self.started = True
            for callback in self.on_start:
                callback()
        group = optimizer.options(loaded_group)
        hp = self.hyper.get(id(loaded_group))
        if hp is None:
            hp = self.hyper[id(loaded_group)] = optimizer._group_hyper(loaded_group, group)
        self._clip(p, group)
        optimizer._update_one(p, loaded_group, group, hp)
        p.grad = None

    def _clip(self, p: Tensor, group: Any) -> None:
        clip = group.get("clip_in_backward")
        if clip is None:
            return
        grad = p.grad
        rule, max_norm = clip
        norm_sq = grad.detach().float().square().sum()
        if rule == "per_tensor":
            grad.mul_((max_norm / (norm_sq.sqrt() + 1e-6)).clamp(max=1.0).to(grad.dtype))
            return
        self.norm_sq = norm_sq if self.norm_sq is None else self.norm_sq + norm_sq.to(self.norm_sq.device)
        previous = group.get("previous_grad_norm")
        if previous is not None and previous > max_norm:
            grad.mul_(max_norm / (previous + 1e-6))

    def finish_step(self, optimizer: Optimizer) -> None:
        """After ``step()``: record this step's global gradient norm in the groups and forget its caches."""
        if self.norm_sq is not None:
            norm = math.sqrt(float(self.norm_sq))
            for group in optimizer.param_groups:
                if group.get("step_in_backward"):
                    group["previous_grad_norm"] = norm
        self.norm_sq = None
        self.hyper.clear()
        self.started = False

    @contextlib.contextmanager
    def accumulate(self) -> Iterator[None]:
        previous, self.accumulating = self.accumulating, True
        try:
            yield
        finally:
            self.accumulating = previous


def update_one(optimizer: Optimizer, p: Tensor, group: Any, hp: Hyper) -> None:
    """One parameter's update on the path its group runs: compiled for ``fused`` groups, else per tensor."""
    if group["fused"] and not p.grad.is_sparse:
        optimizer._fused.step_one(p, group, hp)
    else:
        eager.run_each(optimizer, [p], group, hp)


__all__ = ["CLIP_RULES", "InBackward", "check_clip", "update_one"]

"""Averages of the weights that a wrapper keeps beside the parameters (Lookahead's slow weights, an EMA), and the
request that folds their update into an optimizer's step.

After a step, each average moves towards its parameter, ``a ← a + w·(p − a)`` (``torch.lerp``), and with
``write_back`` the parameter is then set to it (Lookahead's synchronisation). A wrapper around a ravine
optimizer hands this to the optimizer for its next step (:meth:`ravine.Optimizer.fold_average`): the fused path
then does it inside the step's kernel, where the new parameter is still in registers — the average is read and
written once and the parameter is not read again. Every other path, and any parameter the kernel did not cover
(no gradient this step, an odd tensor), gets :func:`lerp_averages` after the step, the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ravine.engine.tensorlist import TensorList


@dataclass
class Fold:
    """A wrapper's request for one step: move ``averages[p]`` towards ``p`` by ``weight`` after the update."""

    averages: dict[Tensor, Tensor]  # parameter -> its average; the fused path re-points values to flat views
    weight: float
    write_back: bool


@torch.no_grad()
def lerp_averages(averages: list[Tensor], params: list[Tensor], weight: float, write_back: bool) -> None:
    """``a.lerp_(p, weight)``, then ``p.copy_(a)`` with ``write_back``; multi-tensor per device, dtype, layout."""
    groups: dict[tuple[Any, ...], tuple[list[Tensor], list[Tensor]]] = {}
    for average, p in zip(averages, params, strict=True):
        layout = (p.device, p.dtype, average.dtype, type(p), getattr(p, "device_mesh", None),
                  tuple(getattr(p, "placements", ())))
        average_list, param_list = groups.setdefault(layout, ([], []))
        average_list.append(average)
        param_list.append(p)
    for average_list, param_list in groups.values():
        dtype = average_list[0].dtype
        source = param_list if param_list[0].dtype == dtype else [p.to(dtype) for p in param_list]
        average_batch = TensorList(average_list)
        average_batch.lerp_(TensorList(source), weight)
        if write_back:
            TensorList(param_list).copy_(average_batch)


__all__ = ["Fold", "lerp_averages"]

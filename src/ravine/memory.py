"""How much memory an optimizer's state holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["state_bytes"]


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):  # LBFGS keeps its history as lists of tensors
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer holds as state, each tensor's memory counted once.

    Counts ``optimizer.state`` (step counters, per-parameter scalars and LBFGS's history included) and
    wrappers' own tensors (Lookahead's slow weights). A tensor reachable twice — the same object, or a view
    of the same elements — is counted once; views of a fused flat buffer count their own elements.
    """
    seen: dict[tuple[int, int, torch.dtype], int] = {}
    holders = [optimizer.state, getattr(optimizer, "averages", {})]
    for holder in holders:
        for t in _tensors(dict(holder)):
            if t.is_sparse:
                size = t._values().numel() * t.element_size() + t._indices().numel() * t._indices().element_size()
                seen[(id(t), 0, t.dtype)] = size
            else:
                seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
    return sum(seen.values())

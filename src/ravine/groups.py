"""Parameter groups: the usual weight-decay split, and per-pattern overrides."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

__all__ = ["NO_DECAY_MODULES", "param_groups"]

NO_DECAY_MODULES: tuple[type[nn.Module], ...] = tuple(
    getattr(nn, name)
    for name in (
        "LayerNorm", "RMSNorm", "GroupNorm", "LocalResponseNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
        "SyncBatchNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LazyBatchNorm1d",
        "LazyBatchNorm2d", "LazyBatchNorm3d", "Embedding", "EmbeddingBag",
    )
    if hasattr(nn, name)
)
"""Modules whose parameters are exempt from weight decay by default (normalisation and embedding layers)."""


@functools.cache
def _named_groups_supported() -> bool:
    """Whether torch.optim takes ``(name, parameter)`` pairs in a group (torch ≥ 2.6)."""
    try:
        torch.optim.SGD([("probe", torch.zeros(1, requires_grad=True))], lr=0.1)
    except (TypeError, ValueError):
        return False
    return True


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into groups for any optimizer.

    A parameter gets ``weight_decay=0.0`` if it is a bias, belongs to a normalisation or embedding layer
    (:data:`NO_DECAY_MODULES`), is 0- or 1-dimensional, or its name matches a glob pattern in ``no_decay``
    (e.g. ``"*.pos_embed"``); every other parameter gets ``weight_decay``. ``overrides`` maps glob patterns to
    extra group options — ``{"head.*": {"lr": 1e-3}}`` — and the first matching pattern wins. Groups hold
    ``params`` and options only. Where the installed torch has named-parameter groups (torch ≥ 2.6), ``params``
    are ``(name, parameter)`` pairs, so the optimizer knows each parameter's name: its state dict carries
    ``param_names`` and ravine's warnings (``skip_nonfinite``) say ``head.weight`` rather than an index.

    Every trainable parameter lands in exactly one group (shared parameters once); frozen parameters
    (``requires_grad=False``) are left out. Empty groups are not returned.

    Example::

        optimizer = ravine.AdamW(ravine.param_groups(model, weight_decay=0.1), lr=3e-4)
    """
    if not weight_decay >= 0:
        raise ValueError(f"Invalid weight_decay: {weight_decay} (weight_decay must be >= 0)")
    patterns = list(no_decay)
    overrides = dict(overrides or {})
    exempt_modules = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, NO_DECAY_MODULES)
        for name, _ in module.named_parameters(recurse=False)
    }
    groups: dict[tuple[str | None, bool], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = not (
            name == "bias" or name.endswith(".bias") or name in exempt_modules or p.ndim <= 1
            or any(fnmatchcase(name, pattern) for pattern in patterns)
        )
        override = next((pattern for pattern in overrides if fnmatchcase(name, pattern)), None)
        groups.setdefault((override, decays), []).append((name, p) if _named_groups_supported() else p)
    result = []
    for (override, decays), params in groups.items():
        group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if override is not None:
            group.update(overrides[override])
        result.append(group)
    return result

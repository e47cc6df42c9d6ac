"""Which parameters Muon should optimise: a model's parameters split into Muon and AdamW groups by rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from ravine.algorithms.muon_with_aux_adam import ADAM_DEFAULTS, MUON_DEFAULTS
from ravine.groups import _named_groups_supported

__all__ = ["MuonGroups", "Route", "muon_param_groups"]

EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class Route:
    """Where one parameter went, and why."""

    name: str
    shape: tuple[int, ...]
    use_muon: bool
    reason: str
    lr: float
    weight_decay: float


class MuonGroups(list):  # type: ignore[type-arg]
    """The parameter groups for :class:`ravine.MuonWithAuxAdam` (a list of dicts), with the routing behind them.

    ``routes`` lists every parameter with its group and the rule that put it there; :meth:`table` prints them.
    """

    def __init__(self, groups: list[dict[str, Any]], routes: list[Route]) -> None:
        super().__init__(groups)
        self.routes = routes

    def table(self) -> str:
        """A plain-text table: name, shape, group, lr, weight decay and why, one parameter per row."""
        rows = [("name", "shape", "group", "lr", "weight decay", "why")]
        rows += [
            (r.name, "×".join(map(str, r.shape)) or "scalar", "Muon" if r.use_muon else "AdamW", f"{r.lr:g}",
             f"{r.weight_decay:g}", r.reason)
            for r in self.routes
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        muon = sum(r.use_muon for r in self.routes)
        lines.append(f"{muon} parameters to Muon, {len(self.routes) - muon} to AdamW")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _output_head(model: nn.Module, head: str | None, names: set[str]) -> str | None:
    """The output head's weight: ``head`` if given, else the last ``nn.Linear`` the model registers."""
    if head is not None:
        if head not in names:
            raise ValueError(f"muon_param_groups: head={head!r} is not a trainable parameter of the model")
        return head
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        return None
    weight = f"{linears[-1]}.weight" if linears[-1] else "weight"
    return weight if weight in names else None


def muon_param_groups(
    model: nn.Module,
    *,
    lr: float = MUON_DEFAULTS["lr"],
    momentum: float = MUON_DEFAULTS["momentum"],
    weight_decay: float = MUON_DEFAULTS["weight_decay"],
    adam_lr: float = ADAM_DEFAULTS["lr"],
    adam_betas: tuple[float, float] = ADAM_DEFAULTS["betas"],
    adam_eps: float = ADAM_DEFAULTS["eps"],
    adam_weight_decay: float = ADAM_DEFAULTS["weight_decay"],
    head: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> MuonGroups:
    """Split ``model``'s trainable parameters into a Muon group and an AdamW group, by rule.

    The rule (Jordan et al., 2024: Muon is for hidden layers): a parameter goes to Muon when it has two or more
    dimensions (a conv weight is treated as the matrix ``(out, in·kh·kw)``), does not belong to an
    ``nn.Embedding``/``nn.EmbeddingBag`` (an embedding is 2-D, but its rows are looked up, not multiplied) and
    is not the output head (the last ``nn.Linear`` the model registers, or ``head="lm_head.weight"``; a head
    tied to an embedding is the embedding's tensor and is caught by either rule). Everything else — biases,
    norm gains, scalars, embeddings, the head — goes to AdamW.

    ``overrides`` maps glob patterns over parameter names to ``"muon"`` or ``"adamw"``; the first matching
    pattern wins over the rule. A pattern that matches no parameter, a value other than those two, or a
    parameter of fewer than two dimensions forced into Muon is a ``ValueError`` naming the pattern.

    Example::

        groups = ravine.muon_param_groups(model, lr=0.02, adam_lr=3e-4, overrides={"blocks.0.*": "adamw"})
        print(groups.table())
        optimizer = ravine.MuonWithAuxAdam(groups)

    Returns a :class:`MuonGroups`: the groups (empty ones left out), each parameter as a ``(name, tensor)``
    pair where torch supports named groups, plus ``routes`` and ``table()``.
    """
    overrides = dict(overrides or {})
    for pattern, target in overrides.items():
        if target not in ("muon", "adamw"):
            raise ValueError(
                f"muon_param_groups: overrides[{pattern!r}] must be 'muon' or 'adamw', not {target!r}"
            )
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    names = {name for name, _ in named}
    embedded = {
        id(p) for module in model.modules() if isinstance(module, EMBEDDING_MODULES)
        for p in module.parameters(recurse=False)
    }
    head_name = _output_head(model, head, names)
    used: set[str] = set()
    routes: list[Route] = []
    for name, p in named:
        pattern = next((pat for pat in overrides if fnmatchcase(name, pat)), None)
        if pattern is not None:
            used.add(pattern)
            use_muon = overrides[pattern] == "muon"
            reason = f"override {pattern!r}"
            if use_muon and p.ndim < 2:
                raise ValueError(
                    f"muon_param_groups: override {pattern!r} sends {name} (shape {tuple(p.shape)}) to Muon, "
                    "which orthogonalises matrices; only parameters of two or more dimensions can go there"
                )
        elif p.ndim < 2:
            use_muon, reason = False, "scalar" if p.ndim == 0 else "vector (bias or norm gain)"
        elif id(p) in embedded:
            use_muon, reason = False, "embedding"
        elif name == head_name:
            use_muon, reason = False, "output head" + ("" if head else " (last Linear)")
        else:
            use_muon, reason = True, "hidden matrix" if p.ndim == 2 else f"{p.ndim}-D weight as a matrix"
        routes.append(Route(name, tuple(p.shape), use_muon, reason, lr if use_muon else adam_lr,
                            weight_decay if use_muon else adam_weight_decay))
    unused = [pattern for pattern in overrides if pattern not in used]
    if unused:
        raise ValueError(f"muon_param_groups: override pattern {unused[0]!r} matches no trainable parameter")
    by_name = dict(named)
    pairs = _named_groups_supported()
    groups: list[dict[str, Any]] = []
    for use_muon in (True, False):
        names_here = [r.name for r in routes if r.use_muon == use_muon]
        params = [(name, by_name[name]) if pairs else by_name[name] for name in names_here]
        if not params:
            continue
        if use_muon:
            options = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        else:
            options = {"lr": adam_lr, "betas": adam_betas, "eps": adam_eps, "weight_decay": adam_weight_decay}
        groups.append({"params": params, "use_muon": use_muon, **options})
    if not groups:
        raise ValueError("muon_param_groups: the model has no trainable parameters")
    return MuonGroups(groups, routes)


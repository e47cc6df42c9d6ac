"""Muon as practitioners train with it: hidden matrices orthogonalised, everything else AdamW, in one optimizer.

The form of Keller Jordan's reference (``pip install muon-optimizer``, module ``muon``: ``MuonWithAuxAdam``
and ``SingleDeviceMuonWithAuxAdam``), used by the modded-nanogpt speedruns.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ravine.engine.optimizer import ENGINE_FLAGS, MathKind, Optimizer, ParamsT, scalar_dtype
from ravine.engine.tensorlist import Maths
from ravine.engine.validation import check_betas, check_lr, check_non_negative
from ravine.engine.views import Hyper, StateView, value_of

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

MUON_DEFAULTS: dict[str, Any] = {"lr": 0.02, "momentum": 0.95, "weight_decay": 0.0}
ADAM_DEFAULTS: dict[str, Any] = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-10, "weight_decay": 0.0}
OPTIONS_BY_FAMILY = {True: set(MUON_DEFAULTS), False: set(ADAM_DEFAULTS)}


def zeropower_via_newtonschulz5(g: Tensor, steps: int = 5) -> Tensor:
    """The reference's quintic Newton–Schulz iteration towards U·Vᵀ of g = U·S·Vᵀ, in bfloat16.

    ``g`` is a matrix or a batch of same-shape matrices. Written with the reference's operations in its order
    (``X / (‖X‖ + 1e-7)``, ``B = b·A + c·A·A``, ``X = a·X + B·X``), so the bfloat16 roundings are the same.
    Singular values land in roughly [0.7, 1.2] rather than at 1, which training tolerates.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm ≤ Frobenius norm ≤ 1
    for _ in range(steps):
        gram = x @ x.mT
        poly = b * gram + c * gram @ gram
        x = a * x + poly @ x
    return x.mT if tall else x


def as_matrices(t: Tensor, batch_dims: int) -> Tensor:
    """A parameter-shaped tensor as matrices: a conv weight (out, in, kh, kw) becomes (out, in·kh·kw)."""
    return t.flatten(start_dim=batch_dims + 1) if t.dim() > batch_dims + 2 else t


class MuonWithAuxAdam(Optimizer):
    r"""Muon for hidden matrices and AdamW for the rest, in one optimizer; matches Keller Jordan's reference.

    Each parameter group says which it is with ``use_muon``. Build the groups from a model with
    :func:`ravine.muon_param_groups`, which routes by rule and prints what went where::

        groups = ravine.muon_param_groups(model, lr=0.02, adam_lr=3e-4)
        print(groups.table())
        optimizer = ravine.MuonWithAuxAdam(groups)

    Muon groups (``use_muon=True``; defaults ``lr=0.02, momentum=0.95, weight_decay=0``)::

        B ← lerp(B, g, 1 − μ);   U ← lerp(g, B, μ)              momentum, Nesterov form
        O ← NS₅(U as a matrix)                                   5 quintic Newton–Schulz steps in bfloat16
        p ← p·(1 − lr·λ) − lr·√max(1, rows/cols)·O

    AdamW groups (``use_muon=False``; defaults ``lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0``)::

        m ← lerp(m, g, 1 − β₁);   v ← lerp(v, g², 1 − β₂)
        p ← p·(1 − lr·λ) − lr·(m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)

    **Learning-rate scaling.** The update is scaled by √max(1, rows/cols), the reference's rule (Jordan et al.,
    2024): an orthogonalised update has unit spectral norm, and this keeps its RMS per output unit comparable
    for tall matrices. It is ``torch.optim.Muon``'s ``adjust_lr_fn="original"`` (its default). torch's other
    option, ``"match_rms_adamw"`` (Liu et al., 2025, "Muon is Scalable for LLM Training"), scales by
    0.2·√max(rows, cols) instead, so that learning rates and weight decay tuned for AdamW carry over; use
    :class:`ravine.Muon` with that option when you want it. Muon's ``lr`` is therefore in units of spectral
    norm per step, and its good values (0.02–0.05) are ~100× AdamW's.

    **Conv weights** (and any parameter of more than two dimensions) are viewed as ``(shape[0], rest)``
    matrices, as the reference does; the scaling uses that matrix's rows and columns. (The reference,
    ``muon-optimizer`` 0.1.0, scales a 4-D weight by its kernel's height/width ratio instead and then fails to
    add the flat update to the 4-D parameter; on 2-D matrices the two agree.)

    **Differences from the reference**, all deliberate: the gradient is not overwritten by the Nesterov
    interpolation (the reference's ``grad.lerp_`` changes ``p.grad``); AdamW's ``step`` is a 0-d float tensor, as
    in torch, rather than an int; an unknown group option is a ``ValueError`` naming it rather than an
    ``AssertionError``; under ``torch.distributed`` nothing needs the distributed class: with DDP every rank
    computes the same result, and matrices sharded by FSDP2 are gathered whole on one owner rank, orthogonalised
    there and scattered back (see :mod:`ravine.engine.sharded`). Matrices are orthogonalised together per shape
    on the multi-tensor path (``foreach=True``, the default on GPUs): one batched matrix-product chain per
    shape. AdamW groups run on every path, ``fused=True`` included; Muon groups run per tensor or multi-tensor.

    Paper: Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024,
    kellerjordan.github.io/posts/muon). State: ``momentum_buffer`` (Muon); ``step``, ``exp_avg``,
    ``exp_avg_sq`` (AdamW).
    """

    nonnegative_state = ("exp_avg_sq",)

    kind = "tensorwise"  # the Muon groups' math; kind_of() says each group's, and AdamW groups fuse
    batched_update = True
    scalar_state = ("step",)

    def __init__(self, params: ParamsT) -> None:
        defaults = {**ADAM_DEFAULTS, **MUON_DEFAULTS, "use_muon": None}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Fill a group's defaults from its family (Muon or AdamW) and refuse options the family lacks."""
        if "use_muon" not in param_group or not isinstance(param_group["use_muon"], bool):
            raise ValueError(
                "MuonWithAuxAdam: every parameter group needs use_muon=True (hidden matrices) or use_muon=False "
                "(everything else); build them with ravine.muon_param_groups(model) "
                f"(got a group with options {sorted(k for k in param_group if k != 'params')})"
            )
        use_muon = param_group["use_muon"]
        family = MUON_DEFAULTS if use_muon else ADAM_DEFAULTS
        allowed = OPTIONS_BY_FAMILY[use_muon] | {"params", "param_names", "use_muon", "skipped_steps"}
        allowed |= set(ENGINE_FLAGS)
        unknown = sorted(set(param_group) - allowed)
        if unknown:
            raise ValueError(
                f"MuonWithAuxAdam: {'Muon' if use_muon else 'AdamW'} groups take {sorted(family)}, not "
                f"{', '.join(unknown)}"
            )
        group = {**family, **param_group}
        check_lr(group["lr"])
        check_non_negative("weight_decay", group["weight_decay"])
        if use_muon:
            check_non_negative("momentum", group["momentum"])
        else:
            check_betas(group["betas"])
            check_non_negative("eps", group["eps"])
        super().add_param_group(group)
        if use_muon:
            for p in self.param_groups[-1]["params"]:
                if p.ndim < 2:
                    raise ValueError(
                        f"MuonWithAuxAdam: a Muon group holds a {p.ndim}-D parameter of shape {tuple(p.shape)}; "
                        "Muon orthogonalises matrices: give vectors and scalars to a use_muon=False group"
                    )

    def kind_of(self, group: dict[str, Any]) -> MathKind:
        return "tensorwise" if group["use_muon"] else "elementwise"

    def check_param(self, p: Tensor) -> None:
        super().check_param(p)
        if torch.is_complex(p):
            raise RuntimeError("MuonWithAuxAdam does not support complex parameters")

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        if hp.use_muon:
            return {"momentum_buffer": torch.zeros_like(p)}
        return {
            "step": torch.tensor(0.0, dtype=scalar_dtype()),
            "exp_avg": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p),
        }

    def step_scalars(self, state: StateView, hp: Hyper) -> dict[str, Any]:
        """AdamW's step count t (a 0-d tensor per parameter, advanced here, before the update reads it)."""
        if hp.use_muon:
            return {}
        state.step.add_(1)
        return {"t": value_of(state.step)}

    def update(self, p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        if hp.use_muon:
            self._muon(p, grad, state, hp)  # type: ignore[arg-type]
        else:
            self._adamw(p, grad, state, hp)

    @staticmethod
    def _muon(p: Tensor, grad: Tensor, state: StateView, hp: Hyper) -> None:
        buf = state.momentum_buffer
        buf.lerp_(grad, 1 - hp.momentum)
        direction = as_matrices(grad.lerp(buf, hp.momentum), hp.batch_dims)
        ortho = zeropower_via_newtonschulz5(direction)
        ortho *= math.sqrt(max(1, direction.size(-2) / direction.size(-1)))  # in bfloat16, as the reference
        p.mul_(1 - hp.lr * hp.weight_decay)
        p.add_(ortho.reshape(p.shape), alpha=-hp.lr)

    @staticmethod
    def _adamw(p: Maths, grad: Maths, state: StateView, hp: Hyper) -> None:
        beta1, beta2 = hp.betas
        state.exp_avg.lerp_(grad, 1 - beta1)
        state.exp_avg_sq.lerp_(grad.mul(grad), 1 - beta2)
        m_hat = state.exp_avg.div(1 - beta1**hp.t)
        v_hat = state.exp_avg_sq.div(1 - beta2**hp.t)
        p.mul_(1 - hp.lr * hp.weight_decay)
        p.add_(m_hat.div_(v_hat.sqrt_().add_(hp.eps)), alpha=-hp.lr)

"""Muon: momentum orthogonalised by Newton–Schulz (Jordan et al., 2024), as torch.optim.Muon computes it."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.validation import check_non_negative, check_numbers
from ravine.engine.views import Hyper, StateView

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _addmm(input: Tensor, a: Tensor, b: Tensor, *, beta: float, alpha: float = 1.0) -> Tensor:
    """``beta·input + alpha·(a @ b)`` for matrices, or for batches of them (one kernel per batch)."""
    if a.dim() == 2:
        return torch.addmm(input, a, b, beta=beta, alpha=alpha)
    return torch.baddbmm(input, a, b, beta=beta, alpha=alpha)


def orthogonalize(g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> Tensor:
    """Newton–Schulz's quintic iteration towards the nearest semi-orthogonal matrix U·Vᵀ of g = U·S·Vᵀ, in bf16.

    ``g`` is a matrix or a batch of same-shape matrices (leading dimensions). The coefficients maximise the
    slope at zero, so singular values land near (not at) 1 in few steps, which training tolerates.
    """
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    norm = x.norm() if x.dim() == 2 else x.norm(dim=(-2, -1), keepdim=True)
    x = x.div(norm.clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.mT
        poly = _addmm(gram, gram, gram, beta=b, alpha=c)
        x = _addmm(x, poly, x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """torch's shape scaling: ``"original"`` (Keller Jordan's √max(1, rows/cols)) or ``"match_rms_adamw"``
    (Moonshot's 0.2·√max(rows, cols), so an AdamW-tuned lr and weight decay carry over)."""
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class Muon(Optimizer):
    r"""Muon for 2-D parameters; drop-in for :class:`torch.optim.Muon`.

    Update (μ the momentum, λ weight decay, NS₅ five Newton–Schulz steps in bfloat16)::

        B  ← lerp(B, g, 1 − μ)
        U  ← lerp(g, B, μ)  if nesterov  else  B
        O  ← NS₅(U)                                   ≈ the orthogonal factor of U
        p  ← p·(1 − lr·λ) − lr·s(shape)·O             s: ``adjust_lr_fn`` (see :func:`adjusted_lr`)

    Papers: Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024,
    kellerjordan.github.io/posts/muon); Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982 (the
    ``match_rms_adamw`` scaling). Only hidden-layer matrices belong here: give embeddings, the output head,
    biases and norms to AdamW. On the multi-tensor path (``foreach=True``, the default on GPUs) same-shape
    matrices are orthogonalised together, one batched matrix-product chain per shape. Under DDP and
    ZeroRedundancyOptimizer it equals a single-process run; under FSDP2 each sharded matrix is gathered whole on
    one owner rank, orthogonalised there and scattered back (:mod:`ravine.engine.sharded`), so it equals a
    single-process run too. State: ``momentum_buffer``.
    """

    kind = "tensorwise"
    batched_update = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
) -> None:
        check_numbers(lr=lr, weight_decay=weight_decay, momentum=momentum, eps=eps, ns_steps=ns_steps)
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        check_non_negative("eps", eps)
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
            ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:  # type: ignore[type-arg]
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if p.ndim != 2:
                raise ValueError(
                    f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}"
                )

    def check_param(self, p: Tensor) -> None:
        if torch.is_complex(p):
            raise RuntimeError("Muon does not support complex parameters")
        if p.grad.is_sparse:
            raise RuntimeError("Muon does not support sparse gradients")

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(p)}

    def update(self, p: Tensor, grad: Tensor, state: StateView, hp: Hyper) -> None:  # type: ignore[override]
        buf = state.momentum_buffer
        buf.lerp_(grad, 1 - hp.momentum)
        direction = grad.lerp(buf, hp.momentum) if hp.nesterov else buf
        ortho = orthogonalize(direction, hp.ns_coefficients, hp.ns_steps, hp.eps)
        rows, cols = p.shape[-2:]
        p.mul_(1 - hp.lr * hp.weight_decay)
        p.add_(ortho, alpha=-adjusted_lr(hp.lr, hp.adjust_lr_fn, rows, cols))

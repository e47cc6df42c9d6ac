"""Adafactor (Shazeer & Stern, 2018), as torch.optim.Adafactor computes it: factored second moments."""

from __future__ import annotations

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.validation import check_numbers
from ravine.engine.views import Hyper, StateView


class Adafactor(Optimizer):
    r"""Adafactor; drop-in for :class:`torch.optim.Adafactor`.

    Update (t the step; a matrix G ∈ ℝ^{…×n×m} keeps row and column statistics, anything smaller a full one)::

        β₂ₜ   ← 1 − t^beta2_decay                           (``1 − β₂ₜ = t^beta2_decay``)
        ρₜ    ← min(lr, 1/√t);   αₜ ← max(ε₂, RMS(p)) · ρₜ  relative step size
        p     ← p·(1 − lr·λ)                                 (if weight_decay)
        R     ← lerp(R, mean_cols(g²), 1 − β₂ₜ);  C ← lerp(C, mean_rows(g²), 1 − β₂ₜ)
        V̂     ← R·C / max(mean(R), ε₁)                      rank-1 estimate of the second moment
        U     ← g / √max(V̂, ε₁²)
        p     ← p − αₜ / max(1, RMS(U)/d) · U                update clipping at d

    Paper: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018, in
    torch's form (no first moment; ε₁ = None means the parameter dtype's machine epsilon). The update needs
    whole tensors (norms, row and column means), so it runs per tensor, also when ``foreach=True``;
    ``fused=True`` is refused. Under FSDP2, matrices sharded by rows or columns are refused with an error
    (vectors work). State: ``step`` and either ``row_var`` and ``col_var`` (≥ 2-D parameters) or
    ``variance``.
    """

    nonnegative_state = ("variance",)

    kind = "tensorwise"
    step_counter = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
) -> None:
        # torch's messages, which already name the argument, after a type check that names it too
        check_numbers(lr=lr, beta2_decay=beta2_decay, d=d, weight_decay=weight_decay, **{"eps[1]": eps[1]})
        if eps[0] is not None:
            check_numbers(**{"eps[0]": eps[0]})
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def check_param(self, p: Tensor) -> None:
        if torch.is_complex(p):
            raise RuntimeError("Adafactor does not support complex parameters")
        if p.grad.is_sparse:
            raise RuntimeError("Adafactor does not support sparse gradients")
        sharded = [pl for pl in getattr(p, "placements", ()) if type(pl).__name__ == "Shard"]
        if sharded and p.dim() > 1:
            raise RuntimeError(
                f"Adafactor cannot factor a sharded parameter of shape {tuple(p.shape)} (placements "
                f"{tuple(getattr(p, 'placements', ()))}): its row and column statistics need the whole matrix, "
                "and updating them shard by shard would give a different result. Optimize matrices with "
                "Adafactor outside FSDP sharding (DDP or ZeroRedundancyOptimizer work), or use another algorithm."
            )

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Tensor]:
        if p.dim() > 1:
            return {"row_var": p.new_zeros((*p.shape[:-1], 1)),
                    "col_var": p.new_zeros((*p.shape[:-2], 1, p.shape[-1]))}
        return {"variance": torch.zeros_like(p)}

    def update(self, p: Tensor, grad: Tensor, state: StateView, hp: Hyper) -> None:  # type: ignore[override]
        eps1, eps2 = hp.eps
        if eps1 is None:
            eps1 = torch.finfo(p.dtype).eps
        step = hp.step
        one_minus_beta2_t = step**hp.beta2_decay
        rho_t = min(hp.lr, 1 / (step**0.5))
        alpha = max(eps2, p.norm(2).item() / (p.numel() ** 0.5)) * rho_t
        if hp.weight_decay != 0:
            p.mul_(1 - hp.lr * hp.weight_decay)
        if grad.dim() > 1:
            # mean of g² along a dimension, as a norm: no g²-sized temporary
            row_mean = grad.norm(dim=-1, keepdim=True).square().div_(grad.size(-1))
            state.row_var.lerp_(row_mean, one_minus_beta2_t)
            col_mean = grad.norm(dim=-2, keepdim=True).square().div_(grad.size(-2))
            state.col_var.lerp_(col_mean, one_minus_beta2_t)
            var_estimate = state.row_var @ state.col_var
            var_estimate.div_(state.row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            state.variance.lerp_(grad * grad, one_minus_beta2_t)
            var_estimate = state.variance.clone()
        update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_().mul_(grad)
        denom = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * hp.d))
        p.add_(update, alpha=-alpha / denom)

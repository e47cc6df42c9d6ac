"""SparseAdam: Adam's moments updated only on the rows a sparse gradient touches (torch.optim.SparseAdam)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ravine.engine.optimizer import Optimizer, ParamsT
from ravine.engine.validation import check_betas, check_numbers
from ravine.engine.views import Hyper, StateView


class SparseAdam(Optimizer):
    r"""Lazy Adam for sparse gradients (``nn.Embedding(sparse=True)``); drop-in for torch.optim.SparseAdam.

    For the coordinates I the gradient stores (t the step, counted from 1)::

        m[I] ← lerp(m[I], g[I], 1 − β₁);   v[I] ← lerp(v[I], g[I]², 1 − β₂)
        p[I] ← p[I] − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m[I] / (√v[I] + ε)

    Other coordinates, and their moments, do not move. The masked form of Adam (Kingma & Ba, ICLR 2015) used
    for embeddings. Dense gradients raise, as in torch. State: ``step`` (a Python int, as torch keeps it),
    ``exp_avg``, ``exp_avg_sq``.
    """

    nonnegative_state = ("exp_avg_sq",)

    kind = "sparse"
    supports_sparse = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
) -> None:
        check_numbers(lr=lr, eps=eps)
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr} (lr must be > 0)")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps} (eps must be > 0)")
        check_betas(betas)
        defaults = dict(lr=lr, betas=betas, eps=eps, maximize=maximize)
        super().__init__(params, defaults)
        at = [[i, j] for i, group in enumerate(self.param_groups) for j, p in enumerate(group["params"])]
        sparse = [index for index, p in zip(at, self._all_params(), strict=True) if p.is_sparse]
        if sparse:
            raise ValueError(f"Sparse params at indices {sparse}: SparseAdam requires dense parameter tensors")
        complex_ = [index for index, p in zip(at, self._all_params(), strict=True) if p.is_complex()]
        if complex_:
            raise ValueError(
                f"Complex params at indices {complex_}: SparseAdam does not support complex parameters"
            )

    def _all_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def check_param(self, p: Tensor) -> None:
        if not p.grad.is_sparse:
            raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")

    def init_state(self, p: Tensor, hp: Hyper) -> dict[str, Any]:
        return {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def update(self, p: Tensor, grad: Tensor, state: StateView, hp: Hyper) -> None:  # type: ignore[override]
        beta1, beta2 = hp.betas
        state.step += 1  # counted even when the gradient is empty, as in torch
        grad = grad.coalesce()  # the update is non-linear: duplicate indices must be summed first
        indices, values = grad._indices(), grad._values()
        if values.numel() == 0:
            return

        def sparse_like(v: Tensor) -> Tensor:
            return torch.sparse_coo_tensor(indices, v, grad.size())

        exp_avg, exp_avg_sq = state.exp_avg, state.exp_avg_sq
        old_exp_avg = exp_avg.sparse_mask(grad)._values()
        exp_avg_change = values.sub(old_exp_avg).mul_(1 - beta1)
        exp_avg.add_(sparse_like(exp_avg_change))
        old_exp_avg_sq = exp_avg_sq.sparse_mask(grad)._values()
        exp_avg_sq_change = values.pow(2).sub_(old_exp_avg_sq).mul_(1 - beta2)
        exp_avg_sq.add_(sparse_like(exp_avg_sq_change))
        # the new moments on the touched rows, without another sparse_mask
        numer = exp_avg_change.add_(old_exp_avg)
        denom = exp_avg_sq_change.add_(old_exp_avg_sq).sqrt_().add_(hp.eps)
        step = state.step
        step_size = hp.lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        p.add_(sparse_like(-step_size * numer.div_(denom)))

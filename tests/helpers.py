"""Shared test machinery: parameter sets, a deterministic gradient stream, and state comparison."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

SHAPES = [(7, 5), (5,), (), (3, 4, 2)]  # includes a 0-dim parameter (pytorch/pytorch#100701)


def make_params(dtype: torch.dtype = torch.float32, seed: int = 0, shapes=SHAPES) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def clone_params(params: list[Tensor]) -> list[Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def flag_grid(**choices: list[Any]) -> Iterator[dict[str, Any]]:
    """Every combination of the given keyword choices."""
    keys = list(choices)
    for values in itertools.product(*(choices[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def set_grads(params: list[Tensor], step: int, *, skip_some: bool = True) -> None:
    """A gradient that depends on the parameter (so differences feed back) plus seeded noise.

    With ``skip_some``, step 2 has no gradients at all and steps 3–4 leave the first parameter without one,
    as torch's own foreach-vs-forloop test does.
    """
    g = torch.Generator().manual_seed(1000 + step)
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
        if skip_some and (step == 2 or (step in (3, 4) and i == 0)):
            p.grad = None
        else:
            p.grad = p.detach() * 0.5 + noise


def state_tensors(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> list[tuple[int, str, Any]]:
    out = []
    for i, p in enumerate(params):
        for key, value in sorted(optimizer.state.get(p, {}).items()):
            out.append((i, key, value))
    return out


def assert_same_run(
    reference: torch.optim.Optimizer,
    ref_params: list[Tensor],
    candidate: torch.optim.Optimizer,
    cand_params: list[Tensor],
    steps: int,
    *,
    exact: bool,
    rtol: float = 1e-6,
    atol: float = 0.0,
    grads: Callable[[list[Tensor], int], None] = set_grads,
    realign: bool = False,
) -> None:
    """Step both optimizers on the same gradient stream and compare parameters and every state tensor.

    With ``realign``, the candidate's parameters and state are overwritten (in place) with the reference's
    after each comparison, as torch's TensorTracker does, so every step is checked from the same start and
    rounding differences cannot accumulate.
    """
    for step in range(steps):
        grads(ref_params, step)
        grads(cand_params, step)
        reference.step()
        candidate.step()
        for i, (a, b) in enumerate(zip(ref_params, cand_params, strict=True)):
            _compare(a, b, f"step {step}: param {i}", exact, rtol, atol)
        ref_state = state_tensors(reference, ref_params)
        cand_state = state_tensors(candidate, cand_params)
        assert [k[:2] for k in ref_state] == [k[:2] for k in cand_state], f"step {step}: state keys differ"
        for (i, key, a), (_, _, b) in zip(ref_state, cand_state, strict=True):
            _compare(a, b, f"step {step}: state[{i}][{key!r}]", exact, rtol, atol)
        if realign:
            with torch.no_grad():
                for a, b in zip(ref_params, cand_params, strict=True):
                    b.copy_(a)
                for (_, _, a), (_, _, b) in zip(ref_state, cand_state, strict=True):
                    b.copy_(a)


def run_against(ours: type, theirs: type, config: dict[str, Any], *, dtype: torch.dtype = torch.float32,
                flags: dict[str, Any], steps: int = 200, **compare: Any) -> None:
    """Build ``theirs`` and ``ours`` on the same parameters with the same flags and compare ``steps`` steps."""
    ref_params = make_params(dtype)
    cand_params = clone_params(ref_params)
    reference = theirs(ref_params, **flags, **config)
    candidate = ours(cand_params, **flags, **config)
    assert_same_run(reference, ref_params, candidate, cand_params, steps, **compare)


def _compare(a: Any, b: Any, where: str, exact: bool, rtol: float, atol: float) -> None:
    a = a.detach() if isinstance(a, Tensor) else torch.tensor(a)
    b = b.detach() if isinstance(b, Tensor) else torch.tensor(b)
    if exact:
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert torch.equal(a, b), f"{where}: not bit-identical, max diff {(a - b).abs().max().item()}"
    else:
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m: f"{where}: {m}")


def amp_step(model, optimizer, scaler, x, dtype=torch.bfloat16, poison=False, clip=None) -> None:
    """One step of the textbook mixed-precision loop on CPU autocast; ``poison`` makes every gradient Inf."""
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=dtype):
        loss = model(x).float().pow(2).mean()
    scaler.scale(loss * (float("inf") if poison else 1.0)).backward()
    if clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()

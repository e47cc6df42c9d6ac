"""What a fused step costs besides its kernel, on one CPU thread.

1. A whole fused AdamW step of one 64-element tensor (nearly all overhead): median of 5 blocks of 2,000 steps.
2. One more call of the compiled step (what each extra run of FSDP2 shards costs): 11 calls against 1 over the
   same tiny buffers, with the hyperparameters prepared once (``FusedRunner._compiled_pieces``).
3. A 14.7 M-parameter flat buffer stepped in 9 calls (cut at random points) against 1, interleaved over 20
   rounds: the per-call cost at the size of one rank's shard in ``ravine bench shards``.
4. A whole fused SGD-momentum step of 97 tiny tensors (the count of ``ravine bench step``'s transformer set)
   against torch's fused SGD step of the same tensors, interleaved: what each spends besides its kernel, per step
   and per tensor.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/fused_call_overhead.py``. Parts 1 and 4 also run on commits that
predate ``_compiled_pieces``; parts 2 and 3 are then skipped.
"""

from __future__ import annotations

import itertools
import statistics
import time

import torch

import ravine


def per_call_us(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - start) / calls)
    return statistics.median(blocks) * 1e6


def prepared(optimizer):
    group = optimizer.options(optimizer.param_groups[0])
    hp = optimizer._group_hyper(optimizer.param_groups[0], group, optimizer.group_scalars(group))
    hp.step = 5.0
    (flat,) = optimizer._fused.flat_groups.values()
    return flat, group, hp


def many_tensors(count: int = 97) -> None:
    """Part 4: ravine's and torch's whole fused SGD-momentum steps over ``count`` 4-element tensors."""
    params = {}
    for name in ("ravine", "torch"):
        params[name] = [torch.zeros(4, requires_grad=True) for _ in range(count)]
        for p in params[name]:
            p.grad = torch.randn(4)
    steps = {"ravine": ravine.SGD(params["ravine"], lr=1e-3, momentum=0.9, fused=True).step,
             "torch": torch.optim.SGD(params["torch"], lr=1e-3, momentum=0.9, fused=True).step}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(10):
        for name in steps if r % 2 else reversed(steps):
            times[name].append(per_call_us(steps[name], 200))
    ours, theirs = (statistics.median(times[name]) for name in ("ravine", "torch"))
    print(f"4. fused SGD-momentum step of {count} tiny tensors: ravine {ours:.0f} µs, torch {theirs:.0f} µs "
          f"({(ours - theirs) / count:+.2f} µs per tensor)")


def main() -> None:
    p = torch.randn(64, requires_grad=True)
    p.grad = torch.randn(64)
    tiny = ravine.AdamW([p], lr=1e-3, fused=True)
    for _ in range(10):
        tiny.step()
    print(f"1. fused AdamW step of one 64-element tensor: {per_call_us(tiny.step, 2000):.0f} µs")
    runner = tiny._fused
    if not hasattr(runner, "_compiled_pieces"):
        many_tensors()
        return
    flat, group, hp = prepared(tiny)
    piece = (flat.param_buffer, flat.grad_buffer, flat.state_buffers)
    one = per_call_us(lambda: runner._compiled_pieces([piece], group, hp, dict(hp.extra), None), 500)
    eleven = per_call_us(lambda: runner._compiled_pieces([piece] * 11, group, hp, dict(hp.extra), None), 500)
    print(f"2. compiled step, tiny buffers: 1 call {one:.0f} µs, 11 calls {eleven:.0f} µs, "
          f"{(eleven - one) / 10:.0f} µs per extra call")

    n = 14_706_688
    big = torch.randn(n, requires_grad=True)
    big.grad = torch.randn(n) * 1e-3
    optimizer = ravine.AdamW([big], lr=1e-3, fused=True)
    for _ in range(3):
        optimizer.step()
    flat, group, hp = prepared(optimizer)
    cuts = [0, *sorted(torch.randint(0, n, (8,), generator=torch.Generator().manual_seed(0)).tolist()), n]
    whole = [(flat.param_buffer, flat.grad_buffer, flat.state_buffers)]
    split = [(flat.param_buffer[a:b], flat.grad_buffer[a:b], {k: v[a:b] for k, v in flat.state_buffers.items()})
             for a, b in itertools.pairwise(cuts)]
    times: dict[int, list[float]] = {1: [], 9: []}
    for pieces in (whole, split):
        optimizer._fused._compiled_pieces(pieces, group, hp, dict(hp.extra), None)
    for r in range(20):
        for pieces in (whole, split) if r % 2 else (split, whole):
            start = time.perf_counter()
            for _ in range(5):
                optimizer._fused._compiled_pieces(pieces, group, hp, dict(hp.extra), None)
            times[len(pieces)].append((time.perf_counter() - start) / 5)
    ratio = statistics.median(a / b for a, b in zip(times[9], times[1], strict=True))
    print(f"3. {n / 1e6:.1f} M elements: 1 call {statistics.median(times[1]) * 1e3:.2f} ms, 9 calls "
          f"{statistics.median(times[9]) * 1e3:.2f} ms, {ratio:.2f}× (median of per-round ratios)")
    many_tensors()


if __name__ == "__main__":
    main()

"""Where ravine's fused SGD-momentum step spends the time torch's fused step does not.

Four candidates on the same memory (ravine's flat buffers of parameters, gradients and momentum), timed in
alternating order over ``--pairs`` rounds; each ratio is the median of per-round ratios to torch's own
``torch._fused_sgd_`` kernel:

* ``torch._fused_sgd_``: ATen's hand-written loop;
* the same two lines (``b.mul_(μ).add_(g)``, ``p.add_(b·(−lr))``) through ``torch.compile`` with dynamic shapes:
  what inductor's loop costs, with nothing of ravine around it;
* ravine's compiled call alone (``FusedRunner._compiled_pieces``: hyperparameters, dynamo's guards, the kernel);
* ravine's whole ``optimizer.step()``.

A profile of ravine's steps then splits the compiled kernel ("Call CompiledFxGraph") from the Python around it.
Usage: python benchmarks/fused_sgd_overhead.py [--pairs N]. Never a timed test.
"""

import argparse
import statistics
import time

import torch
from torch.profiler import profile

import ravine
from ravine.bench.step import transformer_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    params = transformer_params(1.0)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = ravine.SGD(params, lr=1e-3, momentum=0.9, fused=True)
    for _ in range(3):
        optimizer.step()
    (flat,) = optimizer._fused.flat_groups.values()
    buffers = [flat.param_buffer], [flat.grad_buffer], [flat.state_buffers["momentum_buffer"]]

    def torch_kernel() -> None:
        torch._fused_sgd_(*buffers, weight_decay=0.0, momentum=0.9, lr=1e-3, dampening=0.0, nesterov=False,
                          maximize=False, is_first_step=False)

    def plain(p: torch.Tensor, g: torch.Tensor, b: torch.Tensor, momentum: torch.Tensor, lr: torch.Tensor) -> None:
        b.mul_(momentum).add_(g)
        p.add_(b * (-lr))

    compiled_plain = torch.compile(plain, dynamic=True)
    momentum, lr = (torch.tensor(v, dtype=torch.float64) for v in (0.9, 1e-3))
    group = optimizer.options(optimizer.param_groups[0])
    hp = optimizer._group_hyper(optimizer.param_groups[0], group)
    piece = [(flat.param_buffer, flat.grad_buffer, flat.state_buffers)]
    runner = optimizer._fused
    candidates = {
        "torch._fused_sgd_": torch_kernel,
        "torch.compile of the two lines": lambda: compiled_plain(*(b[0] for b in buffers), momentum, lr),
        "ravine's compiled call": lambda: runner._compiled_pieces(piece, group, hp, dict(hp.extra), None),
        "ravine's whole step": optimizer.step,
    }
    for candidate in candidates.values():
        for _ in range(5):
            candidate()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(args.pairs):
        order = list(candidates.items())
        for name, candidate in order if round_ % 2 else reversed(order):
            start = time.perf_counter()
            candidate()
            times[name].append(time.perf_counter() - start)
    kernel = times["torch._fused_sgd_"]
    for name, spent in times.items():
        ratio = statistics.median(a / b for a, b in zip(spent, kernel, strict=True))
        print(f"{name:32s} {statistics.median(spent) * 1e3:7.2f} ms  {ratio:.3f}×")
    with profile() as prof:
        for _ in range(5):
            optimizer.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()

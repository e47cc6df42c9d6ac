"""Where ravine's fused SGD-momentum step spends the time torch's fused step does not.

Both run on the same memory: ravine's flat buffers (parameters, gradients, momentum) are handed to torch's own
``torch._fused_sgd_`` kernel, and the two are timed in alternation (median of per-pair ratios). A profile of
ravine's steps then splits the compiled kernel ("Call CompiledFxGraph") from the Python around it.
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

    for _ in range(10):
        torch_kernel()
        optimizer.step()
    ratios, kernel, ours = [], [], []
    for _ in range(args.pairs):
        start = time.perf_counter()
        torch_kernel()
        kernel.append(time.perf_counter() - start)
        start = time.perf_counter()
        optimizer.step()
        ours.append(time.perf_counter() - start)
        ratios.append(ours[-1] / kernel[-1])
    print(f"torch._fused_sgd_ on ravine's buffers: {statistics.median(kernel) * 1e3:.2f} ms; ravine's whole step: "
          f"{statistics.median(ours) * 1e3:.2f} ms; median ratio {statistics.median(ratios):.3f}")
    with profile() as prof:
        for _ in range(5):
            optimizer.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()

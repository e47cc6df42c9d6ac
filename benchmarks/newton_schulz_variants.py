"""Why batching does not speed Muon up on this CPU, and why Gram-space Newton–Schulz is not shipped.

On the 33 matrices of the step benchmark's transformer-shaped set (same shapes, random gradients with
singular values spread over three decades, as real gradients have), this measures, with interleaved rounds:

* batching: 8 stacked 512×2048 matrices through one ``bmm`` chain against 8 separate ``mm`` chains;
* Gram Newton–Schulz: the iteration run on the m×m Gram matrix, with the polynomial applied to X once at the
  end (fewer FLOPs when a matrix is far from square), against ravine's bf16 Newton–Schulz: seconds for the
  whole set, and each shape's error relative to float32 Newton–Schulz.

Usage: python benchmarks/newton_schulz_variants.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ravine.algorithms.muon_with_aux_adam import NS_COEFFICIENTS, zeropower_via_newtonschulz5
from ravine.bench.step import transformer_params

A, B, C = NS_COEFFICIENTS


def gram_newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Newton–Schulz on the Gram matrix: X_k = Q_k·X₀ with Q_{k+1} = p(Q_k·A₀·Q_k)·Q_k, in bfloat16."""
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    gram = x @ x.mT
    eye = torch.eye(gram.size(-1), dtype=gram.dtype)
    q = None
    for k in range(steps):
        poly = A * eye + B * gram + C * (gram @ gram)
        q = poly if q is None else poly @ q
        if k < steps - 1:
            gram = poly @ gram @ poly
    x = q @ x
    return x.mT if tall else x


def newton_schulz_float32(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    x = g.float()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = A * x + (B * gram + C * gram @ gram) @ x
    return x.mT if tall else x


def gradient_like(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    g = torch.randn(shape, generator=generator)
    k = min(shape)
    spread = torch.diag(torch.logspace(0, -3, k))
    return g @ spread if shape[1] == k else spread @ g


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)

    stack = torch.randn(8, 512, 2048, generator=generator).bfloat16()
    zeropower_via_newtonschulz5(stack)
    batched = timed(lambda: zeropower_via_newtonschulz5(stack), args.rounds)
    looped = timed(lambda: [zeropower_via_newtonschulz5(m) for m in stack], args.rounds)
    print(f"8 × 512×2048 Newton–Schulz: one batched chain {batched * 1e3:.1f} ms, "
          f"8 separate chains {looped * 1e3:.1f} ms")

    shapes = [tuple(p.shape) for p in transformer_params(1.0, "meta") if p.ndim == 2]
    grads = {shape: gradient_like(shape, generator) for shape in set(shapes)}
    plain_total = gram_total = 0.0
    for shape in sorted(grads):
        g = grads[shape]
        reference = newton_schulz_float32(g).double()

        def error(x: torch.Tensor, reference: torch.Tensor = reference) -> float:
            return ((x.double() - reference).norm() / reference.norm()).item()

        plain = timed(lambda g=g: zeropower_via_newtonschulz5(g), args.rounds)
        gram = timed(lambda g=g: gram_newton_schulz(g), args.rounds)
        count = shapes.count(shape)
        plain_total += count * plain
        gram_total += count * gram
        print(f"{shape[0]}×{shape[1]} (×{count}): bf16 Newton–Schulz {plain * 1e3:.1f} ms, error "
              f"{error(zeropower_via_newtonschulz5(g)):.3f}; Gram {gram * 1e3:.1f} ms, error "
              f"{error(gram_newton_schulz(g)):.3f}")
    print(f"whole set: bf16 Newton–Schulz {plain_total * 1e3:.0f} ms, Gram {gram_total * 1e3:.0f} ms "
          f"({plain_total / gram_total:.2f}× fewer seconds)")


if __name__ == "__main__":
    main()

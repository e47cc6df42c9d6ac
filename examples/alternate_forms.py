"""The alternate forms of the classic optimizers that tutorials teach, each as a ravine call next to its formula.

Run: python examples/alternate_forms.py   (prints each form's trajectory on a small quadratic)
"""

from __future__ import annotations

import torch

import ravine


def quadratic_run(make_optimizer, steps: int = 5) -> list[float]:
    """Minimise 0.5·(3x² + y²) from (1, 1); return the x coordinate after each step."""
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([w])
    xs = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (3 * w[0] ** 2 + w[1] ** 2)).backward()
        optimizer.step()
        xs.append(round(w[0].item(), 6))
    return xs


FORMS = {
    # v ← β·v + (1 − β)·g ; w ← w − η·v   (momentum as an exponentially weighted average of gradients;
    # torch's buffer starts at g₁ instead of (1 − β)·g₁, the bias-corrected value of the average at step 1)
    "momentum as EWA": lambda p: ravine.SGD(p, lr=0.1, momentum=0.9, dampening=0.9),
    # v ← μ·v + g ; w ← w − η·(g + μ·v)   (Nesterov's look-ahead, as torch writes it)
    "Nesterov": lambda p: ravine.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    # S ← α·S + (1 − α)·g² ; w ← w − η·g / (√(S / (1 − αᵗ)) + ε)
    "RMSprop with bias correction": lambda p: ravine.RMSprop(p, lr=0.01, bias_correction=True),
    # w ← w − η·m̂ / (√(v̂ + ε_root) + ε)   (ε inside the square root, as optax's eps_root)
    "Adam with eps inside the root": lambda p: ravine.Adam(p, lr=0.1, eps=0.0, eps_root=1e-8),
}


if __name__ == "__main__":
    for name, make in FORMS.items():
        print(f"{name:32s} x after each step: {quadratic_run(make)}")

"""Exponentially weighted averages, with the optional bias correction v/(1 − βᵗ)."""

from __future__ import annotations

from typing import Any


class EWA:
    r"""Running exponentially weighted average ``v ← β·v + (1 − β)·x`` of a stream of numbers.

    With ``bias_correction=True`` (the default) :attr:`value` is ``v/(1 − βᵗ)``, which removes the pull
    towards the zero start in the first steps (Adam's bias correction); with False it is ``v`` itself.
    Used for smoothed loss curves; ``state_dict``/``load_state_dict`` make it resumable.

    >>> smooth = EWA(0.9)
    >>> [round(smooth.update(x), 3) for x in (1.0, 1.0, 1.0)]
    [1.0, 1.0, 1.0]
    """

    def __init__(self, beta: float, bias_correction: bool = True) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta: {beta} (beta must be in [0, 1))")
        self.beta, self.bias_correction = beta, bias_correction
        self.average, self.count = 0.0, 0

    def update(self, x: float) -> float:
        """Add one observation; return the (corrected) average."""
        self.average = self.beta * self.average + (1.0 - self.beta) * float(x)
        self.count += 1
        return self.value

    @property
    def value(self) -> float:
        if self.count == 0:
            raise ValueError("EWA.value: no observation yet (call update first)")
        if not self.bias_correction:
            return self.average
        return self.average / (1.0 - self.beta**self.count)

    def smooth(self, values: list[float]) -> list[float]:
        """The average after each of ``values`` (continuing from the current state)."""
        return [self.update(x) for x in values]

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "bias_correction": self.bias_correction, "average": self.average,
                "count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.beta, self.bias_correction = state_dict["beta"], state_dict["bias_correction"]
        self.average, self.count = state_dict["average"], state_dict["count"]

"""Annealing of the importance-sampling exponent β (Schaul et al. 2016: 0.4 → 1.0).

Prioritized replay biases the sample distribution; IS weights with β = 1 undo the
bias fully.  The bias matters most near convergence, so β rises over training.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearBetaSchedule:
    start: float = 0.4
    end: float = 1.0
    steps: int = 100_000

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if not (0.0 <= self.start <= 1.0 and 0.0 <= self.end <= 1.0):
            raise ValueError("beta must lie in [0, 1]")

    def __call__(self, step: int) -> float:
        """β at learner ``step``: linear from ``start`` to ``end``, then constant."""
        fraction = min(max(step, 0) / self.steps, 1.0)
        return self.start + fraction * (self.end - self.start)

"""Circuit breaker around train steps, and a guarded optimizer step.

A step whose loss or gradients are not finite is skipped (no weight or
optimizer-state change) and counts as a failure.  ``failure_threshold``
failures within ``window_seconds`` open the breaker: training is refused
until ``recovery_seconds`` have passed, then one trial step is let through
(half-open); success closes it, failure re-opens it.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        window_seconds: float = 300.0,
        recovery_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.window_seconds = window_seconds
        self.recovery_seconds = recovery_seconds
        self.clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._half_open = False
        self.total_failures = 0
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._half_open or self.clock() - self._opened_at >= self.recovery_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a train step run now?  Moves an expired open breaker to half-open."""
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._half_open = True
        return state is not BreakerState.OPEN

    def record_success(self) -> None:
        if self._opened_at is not None:
            self._opened_at, self._half_open = None, False
            self._failures.clear()

    def record_failure(self) -> None:
        now = self.clock()
        self.total_failures += 1
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window_seconds:
            self._failures.popleft()
        if self._half_open or len(self._failures) >= self.failure_threshold:
            self._opened_at, self._half_open = now, False
            self.times_opened += 1


def guarded_step(
    loss: torch.Tensor,
    params: Iterable[torch.nn.Parameter],
    optimizer: Optimizer,
    breaker: CircuitBreaker | None,
    max_grad_norm: float | None,
    frozen: Iterable[torch.nn.Parameter] = (),
) -> tuple[bool, float]:
    """Backward, clip and step unless the loss or the gradients are non-finite.

    Returns (stepped, grad_norm).  ``optimizer.zero_grad`` is called first, so
    skipped steps leave no stale gradient behind.  ``frozen`` parameters lose their
    gradients after the backward pass: the optimizer skips them, and the norm is the rest's.
    """
    params = [p for p in params if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(float(loss.detach())):
        if breaker is not None:
            breaker.record_failure()
        return False, float("nan")
    loss.backward()
    for p in frozen:
        p.grad = None
    # Clipping also measures the norm; a non-finite norm means a bad gradient somewhere.
    limit = float("inf") if max_grad_norm is None else max_grad_norm
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit, foreach=True))
    if not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        if breaker is not None:
            breaker.record_failure()
        return False, grad_norm
    optimizer.step()
    if breaker is not None:
        breaker.record_success()
    return True, grad_norm

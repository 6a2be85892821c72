"""The actor's bounded outbox: encoded unrolls waiting for Kafka, and what happens when it is full.

``block``: a full outbox refuses new items; the actor's env loop waits (nothing is lost, experience
just stops being produced while Kafka is away).  ``drop-oldest``: a new item pushes out the oldest one,
the most off-policy unroll, which the caller counts as dropped.  Pure and single-threaded: the actor's
event loop is its only user.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

OVERFLOW_POLICIES = ("block", "drop-oldest")
T = TypeVar("T")


class OutboxFull(RuntimeError):
    """``put`` on a full outbox in ``block`` mode: the caller should have waited for room."""


class Outbox(Generic[T]):
    def __init__(self, capacity: int, overflow: str = "block") -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be >= 1")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}")
        self.capacity = capacity
        self.overflow = overflow
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.capacity

    @property
    def must_wait(self) -> bool:
        """True when a new item cannot go in yet (full, and full means wait)."""
        return self.full and self.overflow == "block"

    def put(self, item: T) -> T | None:
        """Append ``item``; returns the oldest item if one was dropped to make room for it."""
        dropped = None
        if self.full:
            if self.overflow == "block":
                raise OutboxFull(f"outbox holds {len(self._items)} of {self.capacity}")
            dropped = self._items.popleft()
        self._items.append(item)
        return dropped

    def pop(self) -> T:
        """The oldest item (IndexError when empty)."""
        return self._items.popleft()

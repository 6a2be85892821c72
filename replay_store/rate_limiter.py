"""Rate limiter in the spirit of Reverb's ``SampleToInsertRatio``.

It keeps the learner and the actors in step: sampling is refused (or waits)
until ``min_size_to_sample`` items are present and while the learner is more than
``error_buffer`` samples ahead of ``samples_per_insert × inserts``; inserting is
refused (or waits: back-pressure, e.g. pause the Kafka consumer) while the
learner is more than ``error_buffer`` samples behind.  Samples are counted in
items, so a batch of 128 counts 128.

With ``diff = inserts × samples_per_insert − samples`` and
``target = samples_per_insert × min_size_to_sample``:

- sampling ``n`` is allowed iff ``size ≥ min_size_to_sample`` and
  ``diff − n ≥ target − error_buffer``;
- inserting ``n`` is allowed iff the size after it stays ``≤ min_size_to_sample``
  (filling up is always allowed), or ``diff + n × samples_per_insert ≤ target + error_buffer``.

The ``can_*`` checks and ``record_*`` calls are deterministic and never block;
``wait_*`` block on a condition variable with a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, min_size_to_sample: int, samples_per_insert: float, error_buffer: float) -> None:
        if min_size_to_sample < 1:
            raise ValueError("min_size_to_sample must be >= 1")
        if samples_per_insert <= 0:
            raise ValueError("samples_per_insert must be > 0")
        # A band narrower than one insert's worth of samples could block both sides forever.
        if error_buffer < max(1.0, samples_per_insert):
            raise ValueError("error_buffer must be >= max(1, samples_per_insert)")
        self.min_size_to_sample = int(min_size_to_sample)
        self.samples_per_insert = float(samples_per_insert)
        self.error_buffer = float(error_buffer)
        target = self.samples_per_insert * self.min_size_to_sample
        self.min_diff = target - self.error_buffer
        self.max_diff = target + self.error_buffer
        self.inserts = 0
        self.samples = 0
        self.deletes = 0
        self._closed = False
        self._changed = threading.Condition()

    @classmethod
    def min_size(cls, min_size_to_sample: int) -> RateLimiter:
        """Only a minimum size: sampling waits for it, inserts are never throttled."""
        return cls(min_size_to_sample, samples_per_insert=1.0, error_buffer=float("inf"))

    @property
    def size(self) -> int:
        return self.inserts - self.deletes

    # ----------------------------------------------------- checks (no blocking)
    def can_sample(self, count: int = 1) -> bool:
        with self._changed:
            return self._can_sample(count)

    def can_insert(self, count: int = 1) -> bool:
        with self._changed:
            return self._can_insert(count)

    def _can_sample(self, count: int) -> bool:
        if self.size < self.min_size_to_sample:
            return False
        return self.inserts * self.samples_per_insert - self.samples - count >= self.min_diff

    def _can_insert(self, count: int) -> bool:
        if self.size + count <= self.min_size_to_sample:
            return True
        return (self.inserts + count) * self.samples_per_insert - self.samples <= self.max_diff

    # ---------------------------------------------------------------- records
    def record_insert(self, count: int = 1) -> None:
        self._record(inserts=count)

    def record_sample(self, count: int = 1) -> None:
        self._record(samples=count)

    def record_delete(self, count: int = 1) -> None:
        """Items evicted or taken out: they no longer count towards the size."""
        self._record(deletes=count)

    def _record(self, inserts: int = 0, samples: int = 0, deletes: int = 0) -> None:
        if min(inserts, samples, deletes) < 0:
            raise ValueError("counts must be >= 0")
        with self._changed:
            self.inserts += inserts
            self.samples += samples
            self.deletes += deletes
            self._changed.notify_all()

    # --------------------------------------------------------------- blocking
    def wait_can_sample(self, count: int = 1, timeout: float | None = None) -> bool:
        """Block until sampling ``count`` is allowed; False on timeout or close."""
        return self._wait(lambda: self._can_sample(count), timeout)

    def wait_can_insert(self, count: int = 1, timeout: float | None = None) -> bool:
        """Block until inserting ``count`` is allowed; False on timeout or close."""
        return self._wait(lambda: self._can_insert(count), timeout)

    def close(self) -> None:
        """Wake every waiter (shutdown); later waits return False at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _wait(self, allowed: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._closed:
                if allowed():
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return False

    def state(self) -> dict[str, float]:
        with self._changed:
            return {
                "inserts": self.inserts,
                "samples": self.samples,
                "deletes": self.deletes,
                "size": self.size,
                "diff": self.inserts * self.samples_per_insert - self.samples,
                "min_diff": self.min_diff,
                "max_diff": self.max_diff,
            }

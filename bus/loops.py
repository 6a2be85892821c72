"""Small asyncio pieces every service loop shares: best-effort periodic sends (telemetry) and waiting
for a condition (a first policy snapshot) that a stop request or a deadline can cut short."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError


async def send_quietly(send: Callable[[], Awaitable[object]], timeout_s: float = 5.0) -> None:
    """``await send()``, giving up after ``timeout_s``; a Kafka error or timeout is ignored."""
    with contextlib.suppress(KafkaError, TimeoutError):
        await asyncio.wait_for(send(), timeout=timeout_s)


async def every(interval_s: float, stop: asyncio.Event, send: Callable[[], Awaitable[object]]) -> None:
    """Call `send_quietly(send)` every ``interval_s`` seconds until ``stop`` is set (not once more after it)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if not stop.is_set():
            await send_quietly(send)


async def wait_until(ready: Callable[[], bool], stop: asyncio.Event, timeout_s: float, what: str) -> bool:
    """Poll ``ready`` until it holds (True) or ``stop`` is set (False); TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if stop.is_set():
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout_s}s")
        await asyncio.sleep(0.1)
    return True

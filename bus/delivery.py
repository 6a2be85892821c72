"""Send records until the broker acknowledges them: at-least-once delivery through broker outages.

A `ReliableSender` keeps at most ``max_in_flight`` records in flight (`slot()` waits for room, so the
caller's memory stays bounded); each is re-sent with exponential backoff until acknowledged.  After a
failure the idempotent producer's state can be stale (the broker may have forgotten its producer id),
so a fresh producer replaces it; only one replacement runs at a time.

Order: records are handed to the producer in submit order, and re-sends too: a record that failed is
handed over again before any record submitted after it is handed over for the first time, and failed
records go again in their submit order.  What cannot be undone is a later record that the broker had
already acknowledged when an earlier one failed: that one stays ahead (at most ``max_in_flight - 1``
records, and only across a failure); the fifo replay counts it as a redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidTopicError, KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from tamiyo.bus.clients import KafkaSettings, make_producer

log = logging.getLogger(__name__)
Headers = list[tuple[str, bytes]]
# Errors that the same record meets again on every re-send: it is given up (``on_dropped``) instead of
# holding every later record back forever.  Everything else (the broker away, a timeout, a missing ACL an
# operator can add) is retried.
PERMANENT_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError)


class ReliableSender:
    def __init__(
        self,
        settings: KafkaSettings,
        max_in_flight: int,
        *,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        **producer_overrides: Any,
    ) -> None:
        """``producer_factory``: makes each (fresh) producer; default `make_producer(settings, **overrides)`."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.settings = settings
        self.producer_overrides = producer_overrides
        self._make_producer = producer_factory or (lambda: make_producer(self.settings, **self.producer_overrides))
        self._producer: AIOKafkaProducer | None = None  # made in `start`, inside the running event loop
        self.in_flight = 0
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self._restarting = False
        # Records must reach the producer in submit order (the idempotent producer's own retries keep that
        # order): the fifo replay de-duplicates by each producer's increasing sequence and drops what arrives
        # behind a higher one.  `producer.send` waits when its batch accumulator is full, and concurrent
        # waiters resume in no set order (measured: ~43% of a 128-env actor's unrolls reached Kafka behind a
        # later one and were dropped as redeliveries).  So the hand-over to the producer is serialised (one
        # lock), in ticket order; the wait for the broker's acknowledgement is not.
        self._send_order = asyncio.Lock()
        # Ordered (re-)delivery: submit order as tickets; `_waiting` holds every ticket not handed to the
        # producer right now (not yet, or again after a failure).  Only the smallest may be handed over, so
        # a failed record goes again before anything submitted after it, whoever gets the lock first.
        self._tickets = itertools.count()
        self._waiting: set[int] = set()
        self._order_changed = asyncio.Condition(self._send_order)
        self._wakers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._producer = self._make_producer()
        await self._producer.start()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The current producer (replaced after failures: do not keep a reference to it)."""
        if self._producer is None:
            raise RuntimeError("ReliableSender.start() first")
        return self._producer

    async def slot(self) -> None:
        """Wait until one more record may be in flight; the next `submit` uses the slot."""
        await self._slots.acquire()

    def submit(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Headers | None = None,
        on_sent: Callable[[float], None] = lambda latency_ms: None,
        on_retry: Callable[[KafkaError, float], None] = lambda err, backoff_s: None,
        on_dropped: Callable[[KafkaError], None] = lambda err: None,
    ) -> None:
        """Deliver ``value`` in the background (call `slot()` first); ``on_sent(latency_ms)`` once it is
        acknowledged, ``on_retry(error, backoff_s)`` before every re-send, ``on_dropped(error)`` if it is
        given up (one of PERMANENT_ERRORS)."""
        self.in_flight += 1  # counted from here, not from when the task first runs (back-pressure reads it)
        ticket = next(self._tickets)
        self._waiting.add(ticket)
        task = asyncio.create_task(self._deliver(ticket, topic, value, key, headers, on_sent, on_retry, on_dropped))
        self._pending.add(task)
        task.add_done_callback(functools.partial(self._done, ticket))

    def _done(self, ticket: int, task: asyncio.Task[None]) -> None:
        # Here rather than in `_deliver`'s finally: a task cancelled before it first ran has no finally.
        self._pending.discard(task)
        self.in_flight -= 1
        self._slots.release()
        if ticket in self._waiting:  # cancelled before it was handed over: stop holding the later ones back
            self._waiting.discard(ticket)
            waker = asyncio.ensure_future(self._notify_order_changed())
            self._wakers.add(waker)
            waker.add_done_callback(self._wakers.discard)

    async def _deliver(
        self,
        ticket: int,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers | None,
        on_sent: Callable[[float], None],
        on_retry: Callable[[KafkaError, float], None],
        on_dropped: Callable[[KafkaError], None],
    ) -> None:
        backoff = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                fut = await self._hand_over(ticket, topic, value, key, headers)
                await fut
                on_sent((time.perf_counter() - t0) * 1e3)
                return
            except PERMANENT_ERRORS as err:
                log.error("record given up (%s): %s", type(err).__name__, err)
                on_dropped(err)
                return  # `_done` lets the later records go
            except KafkaError as err:
                self._waiting.add(ticket)  # from now on, nothing submitted later is handed over first
                on_retry(err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._restart_producer()

    async def _hand_over(
        self, ticket: int, topic: str, value: bytes, key: bytes | None, headers: Headers | None
    ) -> asyncio.Future[Any]:
        """Give the record to the producer once every record submitted before it has been (again, after a
        failure); its acknowledgement future."""
        async with self._order_changed:
            await self._order_changed.wait_for(lambda: min(self._waiting, default=ticket) >= ticket)
            fut = await self.producer.send(topic, value, key=key, headers=headers)
            self._waiting.discard(ticket)
            self._order_changed.notify_all()
            return fut

    async def _notify_order_changed(self) -> None:
        async with self._order_changed:
            self._order_changed.notify_all()

    async def _restart_producer(self) -> None:
        if self._restarting:
            return
        self._restarting = True
        try:
            old = self.producer
            fresh = self._make_producer()
            await fresh.start()
            self._producer = fresh
            with contextlib.suppress(KafkaError):
                await asyncio.wait_for(old.stop(), timeout=5)
        except (KafkaError, TimeoutError) as err:
            log.warning("producer restart failed: %s", err)
        finally:
            self._restarting = False

    async def wait_all(self) -> None:
        """Wait for every submitted record (each either acknowledged or cancelled)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Give up on what is still unacknowledged (a broker that never answers must not hold a shutdown),
        then stop the producer; both bounded by ``timeout_s``."""
        abandoned = len(self._pending)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout_s)
        if abandoned:
            log.warning("stopped with %d records never acknowledged", abandoned)
        if self._producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._producer.stop(), timeout=timeout_s)

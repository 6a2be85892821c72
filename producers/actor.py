"""The actor service: the Kafka loop around `ActorCore` (`policy` in; `trajectories` and `telemetry` out).

    env loop (worker thread)  ──unrolls──▶  bounded outbox  ──▶  ReliableSender (idempotent producer)
          ▲                                                          │
          └─ SwappablePolicy ◀── SnapshotAcceptor ◀── policy topic   └─ telemetry every few seconds

Broker outages: the outbox holds at most ``queue_size`` unrolls (`Outbox`: ``block`` pauses the envs
when it is full, ``drop-oldest`` drops and counts the oldest); at most ``max_in_flight`` more are in
the sender, each retried until the broker acknowledges it.  Every shutdown step is bounded: a stop
request ends the actor within seconds.  A ``telemetry_sink`` (e.g. the CLI's TensorBoard writer) is
handed each telemetry record's value as it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from opentelemetry.trace import Span, SpanKind

from tamiyo.bus.backlog import GroupBacklog
from tamiyo.bus.clients import KafkaSettings
from tamiyo.bus.delivery import ReliableSender
from tamiyo.bus.follow import follow_newest
from tamiyo.bus.loops import every, send_quietly, wait_until
from tamiyo.bus.observability import headers_for, instruments, tracer
from tamiyo.contracts.signing import TrustedKeys
from tamiyo.contracts.topics import Topics
from tamiyo.producers.actor_config import ActorConfig
from tamiyo.producers.actor_core import ActorCore, ActorStats
from tamiyo.producers.outbox import Outbox

log = logging.getLogger(__name__)
__all__ = ["Actor", "ActorConfig", "ActorStats"]


@dataclass
class _Outgoing:
    """An encoded unroll waiting for Kafka, with the span of its journey (ended on acknowledgement)."""

    sequence: int
    value: bytes
    headers: list[tuple[str, bytes]]
    span: Span


class Actor:
    def __init__(
        self,
        config: ActorConfig,
        settings: KafkaSettings,
        topics: Topics,
        trusted: TrustedKeys | None = None,
        telemetry_sink: Callable[[bytes], None] | None = None,
    ) -> None:
        """``trusted``: the public keys policy snapshots must be signed with (the learned controller only);
        ``telemetry_sink`` gets the value of every telemetry record the actor sends."""
        self.config = config
        self.telemetry_sink = telemetry_sink
        self.settings = settings
        self.topics = topics
        self.core = ActorCore(config, trusted)
        self.outbox: Outbox[_Outgoing] = Outbox(config.queue_size, config.overflow)
        # Record batches of up to 512 KiB (aiokafka's default is 16 KiB: ~4 host-sim unrolls, so a collect of 128
        # went out in ~30 produce requests; counted in the broker's request log, the actor's produce requests
        # were a third of all it served).  512 KiB stays under a default broker's message.max.bytes (1 MiB).
        self.sender = ReliableSender(
            settings.with_client_id(f"tamiyo-{config.actor_id}"), config.max_in_flight, max_batch_size=512 << 10
        )
        self._outbox_changed = asyncio.Event()
        self.backlog: GroupBacklog | None = None
        if config.backlog_group and config.max_backlog is not None:
            self.backlog = GroupBacklog(settings, topics.trajectories, config.backlog_group)

    @property
    def stats(self) -> ActorStats:
        return self.core.stats

    async def run(self, stop: asyncio.Event | None = None) -> ActorStats:
        stop = stop or asyncio.Event()
        cfg, core = self.config, self.core
        tasks: list[asyncio.Task] = []
        await self.sender.start()
        try:
            if self.backlog is not None:
                await self.backlog.start()
            if core.acceptor is not None:
                follow = follow_newest(
                    self.settings, self.topics.policy, core.acceptor.accept, stop, "tamiyo-policy-sub"
                )
                tasks.append(asyncio.create_task(follow, name="policy-subscriber"))
                what = f"no policy snapshot on {self.topics.policy}"
                if not await wait_until(lambda: core.policy_ready, stop, cfg.wait_for_policy_s, what):
                    return core.stats
            publisher = asyncio.create_task(self._publish_loop(stop), name="publisher")
            tasks.append(
                asyncio.create_task(every(cfg.telemetry_every_s, stop, self._send_telemetry), name="telemetry")
            )
            started = time.monotonic()
            while not stop.is_set():
                if cfg.max_unrolls is not None and core.stats.unrolls_made >= cfg.max_unrolls:
                    break
                if cfg.max_seconds is not None and time.monotonic() - started >= cfg.max_seconds:
                    break
                await self._wait_for_consumers(stop)
                # Acting and encoding both run in the worker thread: the event loop keeps only the Kafka work
                # (measured: encoding 128 unrolls on the loop held the GIL against the env thread's torch ops).
                for encoded in await asyncio.to_thread(self._collect_encoded):
                    await self._enqueue(encoded, stop)
                instruments().frames.add(core.record_episodes(), {"actor": cfg.actor_id})
            await self._drain(timeout_s=15.0)
            stop.set()
            self._outbox_changed.set()
            try:  # bounded: with the broker away (or a topic missing) the publisher waits for slots forever
                await asyncio.wait_for(publisher, timeout=10.0)
            except TimeoutError:
                log.warning("stopping with %d unrolls unsent (the broker did not acknowledge them)",
                            len(self.outbox) + self.sender.in_flight)  # fmt: skip
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            await send_quietly(self._send_telemetry)
            if self.backlog is not None:
                with contextlib.suppress(KafkaError, OSError):
                    await self.backlog.stop()
            await self.sender.stop(timeout_s=15)
        return core.stats

    async def _wait_for_consumers(self, stop: asyncio.Event) -> None:
        """Back-pressure: wait while the replay has more than ``max_backlog`` unrolls left to take.  A lag
        that cannot be read (broker away) does not stop the envs: the outbox bounds what piles up then."""
        cfg = self.config
        if self.backlog is None or cfg.max_backlog is None:
            return
        t0 = time.monotonic()
        not_sent = lambda: len(self.outbox) + self.sender.in_flight  # noqa: E731
        try:
            # Bounded: a replay that stays away for 30 s gets one more collect (the outbox bounds the rest).
            await asyncio.wait_for(self.backlog.wait_below(cfg.max_backlog, stop, not_sent=not_sent), timeout=30.0)
        except TimeoutError:
            log.warning("back-pressure: %s still more than %d behind after 30 s; collecting anyway",
                        cfg.backlog_group, cfg.max_backlog)  # fmt: skip
        except (KafkaError, OSError) as err:
            log.warning("back-pressure: could not read the lag of %s (%r); collecting anyway", cfg.backlog_group, err)
        self.core.stats.backpressure_wait_s += time.monotonic() - t0

    def _collect_encoded(self) -> list[tuple[int, bytes, float]]:
        """One collect, each unroll encoded: (sequence, envelope value, encode ms), in order."""
        out = []
        for unroll in self.core.collect():
            t0 = time.perf_counter()
            value = self.core.encode(unroll)
            out.append((unroll.sequence, value, (time.perf_counter() - t0) * 1e3))
        return out

    async def _enqueue(self, encoded: tuple[int, bytes, float], stop: asyncio.Event) -> None:
        sequence, value, encode_ms = encoded
        # The root span of this trajectory's journey; it ends when Kafka acknowledges the record.
        attributes: dict[str, str | int] = {"tamiyo.actor": self.config.actor_id, "tamiyo.sequence": sequence}
        span = tracer().start_span("actor.publish", kind=SpanKind.PRODUCER, attributes=attributes)
        instruments().encode_ms.record(encode_ms, {"payload_type": "Trajectory"})
        while self.outbox.must_wait:
            if stop.is_set():
                return
            self._outbox_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_changed.wait(), timeout=0.5)
        dropped = self.outbox.put(_Outgoing(sequence, value, headers_for(span), span))
        if dropped is not None:
            dropped.span.add_event("dropped: outbox full (overflow=drop-oldest)")
            dropped.span.end()
            self.core.stats.unrolls_dropped += 1
        self._outbox_changed.set()

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        key, topic = self.config.actor_id.encode(), self.topics.trajectories
        while not (stop.is_set() and not len(self.outbox)):
            if not len(self.outbox):
                self._outbox_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_changed.wait(), timeout=0.5)
                continue
            await self.sender.slot()
            item = self.outbox.pop()
            self._outbox_changed.set()
            self.sender.submit(
                topic,
                item.value,
                key=key,
                headers=item.headers,
                on_sent=functools.partial(self._sent, item),
                on_retry=functools.partial(self._retrying, item),
                on_dropped=functools.partial(self._given_up, item),
            )
        await self.sender.wait_all()

    def _sent(self, item: _Outgoing, latency_ms: float) -> None:
        self.core.published(item.sequence, latency_ms)
        instruments().records_out.add(1, {"topic": self.topics.trajectories})
        item.span.end()

    def _given_up(self, item: _Outgoing, err: KafkaError) -> None:
        """The broker refuses this record for good (e.g. larger than its message size limit)."""
        self.core.stats.unrolls_dropped += 1
        self.core.stats.publish_errors += 1
        item.span.add_event("dropped: refused by the broker", {"error": type(err).__name__})
        item.span.end()

    def _retrying(self, item: _Outgoing, err: KafkaError, backoff_s: float) -> None:
        self.core.stats.publish_errors += 1
        item.span.add_event("publish failed, retrying", {"error": type(err).__name__})
        log.warning("publish of sequence %d failed (%s); retrying in %.1fs", item.sequence, err, backoff_s)

    async def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (len(self.outbox) or self.sender.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _send_telemetry(self) -> None:
        value = self.core.telemetry_value(len(self.outbox))
        if self.telemetry_sink is not None:  # first: the last packet reaches it even with the broker away
            self.telemetry_sink(value)
        await self.sender.producer.send(self.topics.telemetry, value, key=b"actor")

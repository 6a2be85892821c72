"""The actor service: step N environments with the behaviour policy, publish Trajectories.

Shape of one actor process:

    env loop (worker thread)  ──unrolls──▶  bounded outbox  ──▶  publisher (idempotent producer)
          ▲                                                          │
          └─ SwappablePolicy ◀── PolicySubscriber (policy topic) ────┘ telemetry every few seconds

Delivery: each unroll becomes one `Trajectory` envelope keyed by actor id, with
``producer_id = <actor id>:<incarnation>`` and a strictly increasing sequence,
which is the replay consumer's de-duplication key (a restarted actor gets a
new incarnation, so its sequence can start again at 0).

Broker outages: the outbox holds at most ``queue_size`` unrolls.  With
``overflow="block"`` (default) the env loop pauses when it is full — nothing is
lost, experience just stops being produced; with ``"drop-oldest"`` the env loop
keeps going and the oldest queued unrolls (the most off-policy ones) are
dropped and counted.  An unroll handed to the publisher is retried (with a
fresh producer if the old one is wedged) until the broker acknowledges it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
from aiokafka.errors import KafkaError
from opentelemetry.trace import Span, SpanKind

from tamiyo.bus.clients import KafkaSettings, make_producer
from tamiyo.bus.observability import headers_for, instruments, tracer
from tamiyo.contracts.codec import EnvelopeEncoder
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.signing import policy_key
from tamiyo.contracts.telemetry import telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.contracts.unroll import Unroll
from tamiyo.producers.actor_config import OVERFLOW_POLICIES, ActorConfig
from tamiyo.producers.behaviour import SwappablePolicy
from tamiyo.producers.controller_policy import ControllerPolicy
from tamiyo.producers.controllers import make_controller
from tamiyo.producers.envs import make_env
from tamiyo.producers.policy_subscriber import PolicySubscriber
from tamiyo.producers.rollout import RolloutCollector

log = logging.getLogger(__name__)


@dataclass
class _Outgoing:
    """An encoded unroll waiting for Kafka, with the trace context it carries."""

    sequence: int
    value: bytes
    headers: list[tuple[str, bytes]]
    span: Span


@dataclass
class ActorStats:
    unrolls_made: int = 0
    unrolls_published: int = 0
    unrolls_dropped: int = 0
    env_steps: int = 0
    episodes: int = 0
    publish_errors: int = 0
    recent_returns: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    publish_latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=500))
    sequences: list[int] = field(default_factory=list)


class Actor:
    def __init__(self, config: ActorConfig, settings: KafkaSettings, topics: Topics) -> None:
        if config.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}")
        self.config = config
        self.settings = settings.with_client_id(f"tamiyo-{config.actor_id}")
        self.topics = topics
        self.stats = ActorStats()
        incarnation = f"{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
        self.encoder = EnvelopeEncoder(
            source=f"actor/{config.actor_id}",
            producer_id=f"{config.actor_id}:{incarnation}",
            correlation_id=config.run_id,
        )
        # Telemetry has its own sequence space so trajectory sequences stay contiguous.
        self.telemetry_encoder = EnvelopeEncoder(
            source=f"actor/{config.actor_id}", producer_id=f"{config.actor_id}:{incarnation}:telemetry"
        )
        self.envs = [make_env(config.env, seed=config.seed * 1000 + i) for i in range(config.num_envs)]
        self.schema = self.envs[0].schema
        self.subscriber: PolicySubscriber | None = None
        if config.controller == "policy":
            self.policy: SwappablePolicy | ControllerPolicy = SwappablePolicy(device=config.device)
            self.subscriber = PolicySubscriber(
                settings,
                topics.policy,
                self.policy,
                key=policy_key(),
                policy_id=config.policy_id,
                schema=self.schema,
                device=config.device,
            )
        else:
            controllers = [
                make_controller(config.controller, seed=config.seed * 1000 + i) for i in range(len(self.envs))
            ]
            self.policy = ControllerPolicy(self.envs, controllers)
        self.collector = RolloutCollector(
            self.envs,
            self.policy,
            config.unroll_length,
            seed=config.seed * 1000,
            actor_id=config.actor_id,
            env_id=config.env,
        )
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        self._outbox_changed = asyncio.Event()
        self._in_flight = 0

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event | None = None) -> ActorStats:
        stop = stop or asyncio.Event()
        cfg = self.config
        tasks: list[asyncio.Task] = []
        self._producer = make_producer(self.settings)
        await self._producer.start()
        try:
            if self.subscriber is not None:
                tasks.append(asyncio.create_task(self.subscriber.run(stop), name="policy-subscriber"))
                if not await self._wait_for_policy(stop):
                    return self.stats
            publisher = asyncio.create_task(self._publish_loop(stop), name="publisher")
            tasks.append(asyncio.create_task(self._telemetry_loop(stop), name="telemetry"))
            started = time.monotonic()
            while not stop.is_set():
                if cfg.max_unrolls is not None and self.stats.unrolls_made >= cfg.max_unrolls:
                    break
                if cfg.max_seconds is not None and time.monotonic() - started >= cfg.max_seconds:
                    break
                unrolls = await asyncio.to_thread(self.collector.collect)
                for unroll in unrolls:
                    await self._enqueue(unroll, stop)
                self._record_episodes()
            await self._drain(timeout_s=15.0)
            stop.set()
            self._outbox_changed.set()
            await publisher
        finally:
            # Every shutdown step is bounded: a stop request must end the actor within seconds.
            stop.set()
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._send_telemetry(), timeout=5)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._producer.stop(), timeout=15)
        return self.stats

    async def _wait_for_policy(self, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + self.config.wait_for_policy_s
        while not self.policy.wait_ready(0):  # type: ignore[union-attr]
            if stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"no policy snapshot on {self.topics.policy} after {self.config.wait_for_policy_s}s")
            await asyncio.sleep(0.2)
        return True

    def _record_episodes(self) -> None:
        eps = self.collector.episodes
        for e in eps[self.stats.episodes :]:
            self.stats.recent_returns.append(e.ret)
        self.stats.episodes = len(eps)
        instruments().frames.add(self.collector.env_steps - self.stats.env_steps, {"actor": self.config.actor_id})
        self.stats.env_steps = self.collector.env_steps

    async def _enqueue(self, unroll: Unroll, stop: asyncio.Event) -> None:
        # The root span of this trajectory's journey; it ends when Kafka acknowledges the record.
        span = tracer().start_span(
            "actor.publish",
            kind=SpanKind.PRODUCER,
            attributes={"tamiyo.actor": self.config.actor_id, "tamiyo.sequence": unroll.sequence},
        )
        t0 = time.perf_counter()
        value = self.encoder.encode(unroll_to_proto(unroll, self.schema.name))
        instruments().encode_ms.record((time.perf_counter() - t0) * 1e3, {"payload_type": "Trajectory"})
        self.stats.unrolls_made += 1
        while len(self._outbox) >= self.config.queue_size:
            if self.config.overflow == "drop-oldest":
                dropped = self._outbox.popleft()
                dropped.span.add_event("dropped: outbox full (overflow=drop-oldest)")
                dropped.span.end()
                self.stats.unrolls_dropped += 1
                break
            if stop.is_set():
                return
            self._outbox_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_changed.wait(), timeout=0.5)
        self._outbox.append(_Outgoing(unroll.sequence, value, headers_for(span), span))
        self._outbox_changed.set()

    # ------------------------------------------------------------ publishing

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        key = self.config.actor_id.encode()
        sem = asyncio.Semaphore(self.config.max_in_flight)
        pending: set[asyncio.Task] = set()
        while not (stop.is_set() and not self._outbox):
            if not self._outbox:
                self._outbox_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._outbox_changed.wait(), timeout=0.5)
                continue
            await sem.acquire()
            item = self._outbox.popleft()
            self._outbox_changed.set()
            task = asyncio.create_task(self._deliver(item, key, sem))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(self, item: _Outgoing, key: bytes, sem: asyncio.Semaphore) -> None:
        """Send until acknowledged; memory stays bounded: the outbox slot is already free, in-flight is capped."""
        self._in_flight += 1
        backoff = 0.2
        topic = self.topics.trajectories
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    fut = await self._producer.send(topic, item.value, key=key, headers=item.headers)
                    await fut
                    self.stats.publish_latency_ms.append((time.perf_counter() - t0) * 1e3)
                    self.stats.unrolls_published += 1
                    self.stats.sequences.append(item.sequence)
                    instruments().records_out.add(1, {"topic": topic})
                    item.span.end()
                    return
                except KafkaError as err:
                    self.stats.publish_errors += 1
                    item.span.add_event("publish failed, retrying", {"error": type(err).__name__})
                    log.warning("publish of sequence %d failed (%s); retrying in %.1fs", item.sequence, err, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    await self._maybe_restart_producer()
        finally:
            self._in_flight -= 1
            sem.release()

    async def _maybe_restart_producer(self) -> None:
        """After an outage the idempotent producer's state can be stale; a fresh one re-registers."""
        if getattr(self, "_restarting", False):
            return
        self._restarting = True
        try:
            old = self._producer
            fresh = make_producer(self.settings)
            await fresh.start()
            self._producer = fresh
            with contextlib.suppress(KafkaError):
                await asyncio.wait_for(old.stop(), timeout=5)
        except (KafkaError, TimeoutError) as err:
            log.warning("producer restart failed: %s", err)
        finally:
            self._restarting = False

    async def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (self._outbox or self._in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------ telemetry

    async def _telemetry_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.telemetry_every_s)
            if not stop.is_set():
                with contextlib.suppress(KafkaError, TimeoutError):
                    await asyncio.wait_for(self._send_telemetry(), timeout=5)

    def telemetry_metrics(self) -> dict[str, float]:
        s = self.stats
        now = time.monotonic()
        last_t, last_steps = getattr(self, "_last_tel", (now, 0))
        rate = (s.env_steps - last_steps) / (now - last_t) if now > last_t else 0.0
        self._last_tel = (now, s.env_steps)
        metrics = {
            "env_steps": float(s.env_steps),
            "env_steps_per_s": rate,
            "episodes": float(s.episodes),
            "unrolls_published": float(s.unrolls_published),
            "unrolls_dropped": float(s.unrolls_dropped),
            "publish_errors": float(s.publish_errors),
            "queue_depth": float(len(self._outbox)),
            "policy_version": float(getattr(self.policy, "version", 0)),
        }
        if s.recent_returns:
            metrics["episode_return_mean"] = float(np.mean(s.recent_returns))
        if s.publish_latency_ms:
            metrics["publish_latency_ms_p50"] = float(np.percentile(s.publish_latency_ms, 50))
        if self.subscriber is not None:
            metrics["snapshots_loaded"] = float(self.subscriber.stats.loaded)
            metrics["snapshots_rejected"] = float(sum(self.subscriber.stats.rejected.values()))
        return metrics

    async def _send_telemetry(self) -> None:
        packet = telemetry_packet(
            f"actor/{self.config.actor_id}",
            self.config.run_id,
            self.telemetry_metrics(),
            healthy=self.stats.publish_errors == 0,
        )
        await self._producer.send(self.topics.telemetry, self.telemetry_encoder.encode(packet), key=b"actor")

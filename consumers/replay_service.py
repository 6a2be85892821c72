"""The replay consumer: Kafka `trajectories` → replay store → `batches`, priorities back in.

One asyncio loop does four things in turn, so the store needs no extra locking:

1. consume `trajectories` (consumer group): decode + validate every record,
   store the still-compressed payload with (producer id, sequence) as the
   de-duplication key; bad records go to `deadletter` with the reason;
2. publish `SampledBatch`es to `batches` while fewer than ``max_in_flight``
   batches are unacknowledged and the rate limiter allows sampling
   (prioritized: sum-tree sampling with IS weights; fifo: oldest fresh items
   first, each exactly once, stale ones dropped);
3. consume `priorities`: apply `PriorityUpdate`s (stale indices of evicted items
   are ignored by key) and count the batch as acknowledged;
4. every ``snapshot_every_s``: snapshot the prioritized store atomically, then
   commit the consumed offsets.

Offsets are committed only after the data is durable: in prioritized mode
after a snapshot that contains it (a `kill -9` loses nothing committed: the
restarted service restores the snapshot and re-reads everything after the
committed offsets, and the dedup key drops what the snapshot already has);
without a snapshot path, or in fifo mode, right after the insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind, Status, StatusCode

from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.deadletter import DeadLetterSink
from tamiyo.bus.observability import (
    context_from_headers,
    context_from_traceparent,
    headers_for,
    instruments,
    links_to,
    traceparent_of,
    tracer,
)
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.telemetry import LabelledMetric, telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.replay_store.fifo import OnPolicyFifo
from tamiyo.replay_store.prioritized import PrioritizedReplay
from tamiyo.replay_store.rate_limiter import RateLimiter
from tamiyo.replay_store.schedules import LinearBetaSchedule
from tamiyo.replay_store.snapshot import load_snapshot, save_snapshot
from tamiyo.replay_store.storage import ItemMeta

log = logging.getLogger(__name__)
MODES = ("prioritized", "fifo")


@dataclass
class ReplayConfig:
    mode: str = "prioritized"
    capacity: int = 100_000
    max_bytes: int = 1 << 30
    batch_size: int = 32  # trajectories per SampledBatch
    alpha: float = 0.6
    beta_start: float = 0.4
    beta_end: float = 1.0
    beta_steps: int = 10_000  # batches over which beta anneals
    min_size: int | None = None  # items before the first sample (default: batch_size)
    # Replay ratio: how often each trajectory is sampled on average (None: no limit but the minimum size).
    samples_per_insert: float | None = None
    samples_per_insert_tolerance: float = 256.0
    max_in_flight: int = 2  # batches published and not yet acknowledged by the learner
    ack_timeout_s: float = 120.0  # an unacknowledged batch stops counting after this long
    max_policy_lag: int = 4  # fifo: items older than this many policy versions are dropped
    snapshot_path: str | None = None
    snapshot_every_s: float = 10.0
    telemetry_every_s: float = 5.0
    replay_id: str = "replay-0"
    run_id: str = ""
    group_id: str | None = None
    max_seconds: float | None = None
    seed: int = 0


@dataclass
class ReplayStats:
    consumed: int = 0
    inserted: int = 0
    duplicates: int = 0
    batches_published: int = 0
    acks: int = 0
    priority_updates_applied: int = 0
    stale_acks: int = 0
    snapshots: int = 0


class ReplayService:
    def __init__(self, config: ReplayConfig, settings: KafkaSettings, topics: Topics) -> None:
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.config = config
        self.settings = settings.with_client_id(f"tamiyo-{config.replay_id}")
        self.topics = topics
        self.stats = ReplayStats()
        self.group_id = config.group_id or f"tamiyo-replay-{config.run_id or 'default'}"
        self.encoder = EnvelopeEncoder(source=f"replay/{config.replay_id}")
        min_size = config.min_size or config.batch_size
        if config.samples_per_insert is None:
            self.limiter = RateLimiter.min_size(min_size)
        else:
            tolerance = max(config.samples_per_insert_tolerance, config.samples_per_insert * config.batch_size)
            self.limiter = RateLimiter(min_size, config.samples_per_insert, tolerance)
        self.beta = LinearBetaSchedule(config.beta_start, config.beta_end, config.beta_steps)
        self.store: PrioritizedReplay | OnPolicyFifo
        snapshot = Path(config.snapshot_path) if config.snapshot_path else None
        if config.mode == "prioritized":
            if snapshot is not None and snapshot.exists():
                self.store = load_snapshot(snapshot)
                log.info("restored %d items from %s", len(self.store), snapshot)
                self.limiter.record_insert(len(self.store))
            else:
                self.store = PrioritizedReplay(
                    config.capacity, alpha=config.alpha, max_bytes=config.max_bytes, seed=config.seed
                )
        else:
            self.store = OnPolicyFifo(config.capacity, config.max_policy_lag, max_bytes=config.max_bytes)
        self.policy_version = 0
        self._next_batch_id = int(time.time() * 1000) << 16  # unique across restarts
        self._outstanding: dict[int, float] = {}  # batch id -> publish time
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_snapshot = time.monotonic()
        self._traces: dict[int, str] = {}  # item key -> traceparent of its replay.insert span

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event | None = None) -> ReplayStats:
        stop = stop or asyncio.Event()
        cfg = self.config
        self.producer = make_producer(self.settings, compression_type=None)
        self.trajectories = make_consumer(
            self.settings, self.topics.trajectories, group_id=self.group_id, max_poll_records=512
        )
        self.priorities = make_consumer(
            self.settings, self.topics.priorities, group_id=None, auto_offset_reset="latest"
        )
        await self.producer.start()
        await self.trajectories.start()
        await self.priorities.start()
        self.deadletter = DeadLetterSink(self.producer, self.topics.deadletter, f"replay/{cfg.replay_id}")
        started = time.monotonic()
        last_telemetry = time.monotonic()
        try:
            while not stop.is_set():
                if cfg.max_seconds is not None and time.monotonic() - started > cfg.max_seconds:
                    break
                await self._consume_trajectories()
                await self._consume_priorities()
                await self._publish_batches()
                await self._maybe_snapshot_and_commit()
                if time.monotonic() - last_telemetry >= cfg.telemetry_every_s:
                    last_telemetry = time.monotonic()
                    with contextlib.suppress(KafkaError):
                        await self._send_telemetry()
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await self._maybe_snapshot_and_commit(force=True)
            with contextlib.suppress(KafkaError):
                await self._send_telemetry()
            await self.trajectories.stop()
            await self.priorities.stop()
            await self.producer.stop()
        return self.stats

    # ------------------------------------------------------------ 1. trajectories in

    async def _consume_trajectories(self) -> None:
        # Back-pressure: when the learner is behind, stop taking trajectories (Kafka keeps them).
        if not self.limiter.can_insert(1) or (isinstance(self.store, OnPolicyFifo) and not self.store.can_insert(1)):
            await asyncio.sleep(0.01)
            return
        batch = await self.trajectories.getmany(timeout_ms=50, max_records=512)
        if not batch:
            return
        payloads: list[bytes] = []
        producers: list[str] = []
        sequences: list[int] = []
        versions: list[int] = []
        lengths: list[int] = []
        encodings: list[int] = []
        raw_sizes: list[int] = []
        traceparents: list[str] = []
        for tp, records in batch.items():
            instruments().records_in.add(len(records), {"topic": tp.topic})
            for rec in records:
                self.stats.consumed += 1
                # Child of the actor's publish span: the record carries its trace context.
                span = tracer().start_span(
                    "replay.insert", context=context_from_headers(rec.headers), kind=SpanKind.CONSUMER
                )
                t0 = time.perf_counter()
                try:
                    decoded = decode_envelope(rec.value, expect=pb.Trajectory)
                    unroll = unroll_from_proto(decoded.payload)
                except LeylineError as err:
                    span.set_status(Status(StatusCode.ERROR, type(err).__name__))
                    span.end()
                    await self.deadletter.send(rec, err)
                    continue
                instruments().decode_ms.record((time.perf_counter() - t0) * 1e3, {"payload_type": "Trajectory"})
                traceparents.append(traceparent_of(span))
                span.end()
                env = decoded.envelope
                payloads.append(env.payload)  # stored as it came: already compressed by the actor
                producers.append(env.producer_id)
                sequences.append(int(env.sequence))
                versions.append(int(unroll.policy_versions.min()))
                lengths.append(unroll.length)
                encodings.append(int(env.content_encoding))
                raw_sizes.append(int(env.uncompressed_size))
            self._uncommitted[tp] = records[-1].offset + 1
        if payloads:
            meta = ItemMeta(
                producer_ids=producers,
                sequences=sequences,
                policy_versions=versions,
                lengths=lengths,
                encodings=encodings,
                raw_sizes=raw_sizes,
            )
            if isinstance(self.store, PrioritizedReplay):
                evicted_before = self.store.storage.evicted_total
                slots = self.store.add(payloads, meta=meta)
                # Evictions shrink the buffer; the rate limiter must know or it over-counts the size.
                evicted = self.store.storage.evicted_total - evicted_before
            else:
                slots = self.store.put(payloads, meta)
                evicted = 0
            stored = int((slots >= 0).sum())
            self._remember_traces(slots, traceparents)
            self.stats.inserted += stored
            self.stats.duplicates += len(payloads) - stored
            self.limiter.record_insert(stored)
            if evicted:
                self.limiter.record_delete(evicted)
        if not self.config.snapshot_path or isinstance(self.store, OnPolicyFifo):
            await self._commit()

    def _remember_traces(self, slots: np.ndarray, traceparents: list[str]) -> None:
        """Keep each stored item's trace context (by its generation key) for when it is sampled."""
        stored = slots >= 0
        keys = self.store.storage.item_ids[slots[stored]]
        for key, tp in zip(keys.tolist(), np.asarray(traceparents, dtype=object)[stored], strict=True):
            self._traces[key] = tp
        if len(self._traces) > self.store.storage.capacity * 1.25:
            live = self.store.storage.item_ids
            oldest_live = int(live[live >= 0].min()) if (live >= 0).any() else 0
            self._traces = {k: v for k, v in self._traces.items() if k >= oldest_live}

    def _batch_item_trace(self, key: int) -> str:
        """A `replay.batch_item` span in the item's own trace; its context goes into the SampledItem."""
        span = tracer().start_span("replay.batch_item", context=context_from_traceparent(self._traces.get(key, "")))
        span.end()
        return traceparent_of(span)

    # ------------------------------------------------------------ 2. batches out

    def _expire_outstanding(self) -> None:
        now = time.monotonic()
        for batch_id, sent in list(self._outstanding.items()):
            if now - sent > self.config.ack_timeout_s:
                log.warning("batch %d was never acknowledged; no longer counted in flight", batch_id)
                del self._outstanding[batch_id]

    async def _publish_batches(self) -> None:
        cfg = self.config
        self._expire_outstanding()
        while len(self._outstanding) < cfg.max_in_flight and self.limiter.can_sample(cfg.batch_size):
            if isinstance(self.store, PrioritizedReplay):
                if len(self.store) < (cfg.min_size or cfg.batch_size):
                    return
                beta = self.beta(self.stats.batches_published)
                s = self.store.sample(cfg.batch_size, beta=beta)
                items = [
                    pb.SampledItem(
                        index=int(s.indices[i]),
                        key=int(s.keys[i]),
                        weight=float(s.weights[i]),
                        encoding=int(s.encodings[i]),
                        uncompressed_size=int(s.raw_sizes[i]),
                        trajectory=s.payloads[i],
                    )
                    for i in range(len(s.payloads))
                ]
            else:
                if len(self.store) < cfg.batch_size:
                    return
                beta = 0.0
                f = self.store.take(cfg.batch_size, self.policy_version)
                if len(f) == 0:
                    return
                self.limiter.record_delete(len(f))
                items = [
                    pb.SampledItem(
                        index=int(f.item_ids[i]),
                        key=int(f.item_ids[i]),
                        weight=1.0,
                        encoding=int(f.encodings[i]),
                        uncompressed_size=int(f.raw_sizes[i]),
                        trajectory=f.payloads[i],
                    )
                    for i in range(len(f))
                ]
            for item in items:
                item.trace_parent = self._batch_item_trace(int(item.key))
            batch_id = self._next_batch_id
            self._next_batch_id += 1
            msg = pb.SampledBatch(
                batch_id=batch_id,
                items=items,
                buffer_size=len(self.store),
                beta=beta,
                created_at_ns=time.time_ns(),
                replay_id=cfg.replay_id,
            )
            with tracer().start_as_current_span(
                "replay.publish_batch",
                kind=SpanKind.PRODUCER,
                links=links_to(it.trace_parent for it in items),
                attributes={"tamiyo.batch_id": batch_id, "tamiyo.items": len(items)},
            ) as span:
                await self.producer.send_and_wait(
                    self.topics.batches, self.encoder.encode(msg), key=cfg.replay_id.encode(), headers=headers_for(span)
                )
            instruments().records_out.add(1, {"topic": self.topics.batches})
            self.limiter.record_sample(len(items))
            self._outstanding[batch_id] = time.monotonic()
            self.stats.batches_published += 1

    # ------------------------------------------------------------ 3. priorities / acks in

    async def _consume_priorities(self) -> None:
        batch = await self.priorities.getmany(timeout_ms=0 if self._outstanding else 10, max_records=256)
        for records in batch.values():
            for rec in records:
                try:
                    update = decode_envelope(rec.value, expect=pb.PriorityUpdate).payload
                except LeylineError as err:
                    await self.deadletter.send(rec, err)
                    continue
                self.policy_version = max(self.policy_version, int(update.learner_step))
                if self._outstanding.pop(int(update.batch_id), None) is None:
                    self.stats.stale_acks += 1  # another replay's batch, or one that timed out
                else:
                    self.stats.acks += 1
                if isinstance(self.store, PrioritizedReplay) and len(update.indices):
                    idx = np.asarray(update.indices, dtype=np.int64)
                    if idx.max() >= self.store.capacity:
                        await self.deadletter.send(rec, LeylineError("priority index beyond capacity"))
                        continue
                    self.stats.priority_updates_applied += self.store.update_priorities(
                        idx,
                        np.asarray(update.priorities, dtype=np.float64),
                        np.asarray(update.keys, dtype=np.int64),
                    )

    # ------------------------------------------------------------ 4. durability

    async def _maybe_snapshot_and_commit(self, force: bool = False) -> None:
        path = self.config.snapshot_path
        if not path or not isinstance(self.store, PrioritizedReplay):
            return
        if not self._uncommitted:
            return
        if not force and time.monotonic() - self._last_snapshot < self.config.snapshot_every_s:
            return
        offsets = dict(self._uncommitted)
        await asyncio.to_thread(save_snapshot, self.store, path)
        self.stats.snapshots += 1
        self._last_snapshot = time.monotonic()
        self._traces: dict[int, str] = {}  # item key -> traceparent of its replay.insert span
        await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        offsets = offsets if offsets is not None else dict(self._uncommitted)
        if not offsets:
            return
        await self.trajectories.commit(offsets)
        for tp, off in offsets.items():
            if self._uncommitted.get(tp) == off:
                del self._uncommitted[tp]

    # ------------------------------------------------------------ telemetry

    def telemetry_metrics(self) -> dict[str, float]:
        s = self.stats
        metrics = {
            "buffer_size": float(len(self.store)),
            "consumed": float(s.consumed),
            "inserted": float(s.inserted),
            "duplicates": float(s.duplicates),
            "batches_published": float(s.batches_published),
            "batches_in_flight": float(len(self._outstanding)),
            "acks": float(s.acks),
            "priority_updates_applied": float(s.priority_updates_applied),
            "deadlettered": float(getattr(getattr(self, "deadletter", None), "total", 0)),
            "snapshots": float(s.snapshots),
        }
        metrics.update({f"store_{k}": float(v) for k, v in self.store.stats().items()})
        return metrics

    async def _send_telemetry(self) -> None:
        reasons = getattr(getattr(self, "deadletter", None), "counts", Counter())
        packet = telemetry_packet(
            f"replay/{self.config.replay_id}",
            self.config.run_id,
            self.telemetry_metrics(),
            labelled=[LabelledMetric("deadlettered_by_reason", float(n), {"reason": r}) for r, n in reasons.items()],
        )
        await self.producer.send(self.topics.telemetry, self.encoder.encode(packet), key=b"replay")

"""The replay consumer service: the Kafka loop around `ReplayCore` (`trajectories` in, `batches` out,
`priorities` back in; bad records to `deadletter`).

One asyncio loop does four things in turn, so the core needs no locking: consume trajectories (unless
the core applies back-pressure), consume acks, publish batches while the core allows, and snapshot and
commit when due.  Each record's trace continues here: `replay.insert` (child of the actor's publish
span), `replay.batch_item` when the trajectory goes into a batch, and `replay.publish_batch` per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
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
from tamiyo.contracts.topics import Topics
from tamiyo.replay_store.core import IncomingRecord, ReplayCore
from tamiyo.replay_store.replay_config import ReplayConfig, ReplayStats


@dataclass
class _Clients:
    """The Kafka clients of one `run` (made inside the running event loop, as aiokafka requires)."""

    producer: AIOKafkaProducer
    trajectories: AIOKafkaConsumer  # consumer group: offsets committed once applied
    priorities: AIOKafkaConsumer  # no group, from the latest: acks for batches published from now on


class ReplayService:
    def __init__(self, config: ReplayConfig, settings: KafkaSettings, topics: Topics) -> None:
        self.config = config
        self.settings = settings.with_client_id(f"tamiyo-{config.replay_id}")
        self.topics = topics
        self.core = ReplayCore(config)
        self.group_id = config.group_id or f"tamiyo-replay-{config.run_id or 'default'}"
        self.deadletter = DeadLetterSink(topics.deadletter, f"replay/{config.replay_id}")

    @property
    def stats(self) -> ReplayStats:
        return self.core.stats

    async def run(self, stop: asyncio.Event | None = None) -> ReplayStats:
        stop = stop or asyncio.Event()
        cfg = self.config
        kafka = _Clients(
            # No linger: a batch is one large record, awaited before the loop goes on (5 ms of linger per batch).
            producer=make_producer(self.settings, compression_type=None, linger_ms=0),
            trajectories=make_consumer(
                self.settings, self.topics.trajectories, group_id=self.group_id, max_poll_records=512
            ),
            priorities=make_consumer(self.settings, self.topics.priorities, group_id=None, auto_offset_reset="latest"),
        )
        await kafka.producer.start()
        await kafka.trajectories.start()
        await kafka.priorities.start()
        started = last_telemetry = time.monotonic()
        try:
            while not stop.is_set():
                if cfg.max_seconds is not None and time.monotonic() - started > cfg.max_seconds:
                    break
                await self._consume_trajectories(kafka)
                await self._consume_acks(kafka)
                await self._publish_batches(kafka)
                await self._commit(kafka, await asyncio.to_thread(self.core.snapshot_if_due))
                if time.monotonic() - last_telemetry >= cfg.telemetry_every_s:
                    last_telemetry = time.monotonic()
                    with contextlib.suppress(KafkaError):
                        await self._send_telemetry(kafka)
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await self._commit(kafka, await asyncio.to_thread(self.core.snapshot_if_due, True))
            with contextlib.suppress(KafkaError):
                await self._send_telemetry(kafka)
            await kafka.trajectories.stop()
            await kafka.priorities.stop()
            await kafka.producer.stop()
        return self.core.stats

    async def _consume_trajectories(self, kafka: _Clients) -> None:
        room = self.core.trajectory_room(512)
        consumer = kafka.trajectories
        # Back-pressure by pause(), not by not polling: the loop keeps polling, so the group does not
        # rebalance this consumer away (max.poll.interval.ms) while the learner is slow.
        if not room:
            consumer.pause(*consumer.assignment())
            # Partitions assigned by a rebalance during this poll start unpaused and may return records:
            # seek back to them, so they are fetched again once there is room (not skipped).
            for tp, records in (await consumer.getmany(timeout_ms=10)).items():
                if records:
                    consumer.seek(tp, records[0].offset)
            return
        if consumer.paused():
            consumer.resume(*consumer.paused())
        fetched = await consumer.getmany(timeout_ms=50, max_records=room)
        records = [rec for recs in fetched.values() for rec in recs]
        if not records:
            return
        for tp, recs in fetched.items():
            instruments().records_in.add(len(recs), {"topic": tp.topic})
        # Each insert is a child of the actor's publish span: the record carries its trace context.
        spans = [
            tracer().start_span("replay.insert", context=context_from_headers(r.headers), kind=SpanKind.CONSUMER)
            for r in records
        ]
        incoming = [
            IncomingRecord(TopicPartition(r.topic, r.partition), r.offset, r.value, traceparent_of(span))
            for r, span in zip(records, spans, strict=True)
        ]
        result = self.core.ingest(incoming)
        for ms in result.decode_ms:
            instruments().decode_ms.record(ms, {"payload_type": "Trajectory"})
        for i, err in result.rejected:
            spans[i].set_status(Status(StatusCode.ERROR, type(err).__name__))
        for span in spans:
            span.end()
        for i, err in result.rejected:
            await self.deadletter.send(kafka.producer, records[i], err)
        await self._commit(kafka, result.commit)

    async def _consume_acks(self, kafka: _Clients) -> None:
        fetched = await kafka.priorities.getmany(timeout_ms=0 if self.core.outstanding else 10, max_records=256)
        records = [rec for recs in fetched.values() for rec in recs]
        for i, err in self.core.apply_acks([r.value for r in records]):
            await self.deadletter.send(kafka.producer, records[i], err)

    async def _publish_batches(self, kafka: _Clients) -> None:
        while (batch := self.core.next_batch()) is not None:
            for item in batch.items:  # `replay.batch_item`, in each trajectory's own trace
                span = tracer().start_span("replay.batch_item", context=context_from_traceparent(item.trace_parent))
                span.end()
                item.trace_parent = traceparent_of(span)
            with tracer().start_as_current_span(
                "replay.publish_batch",
                kind=SpanKind.PRODUCER,
                links=links_to(it.trace_parent for it in batch.items),
                attributes={"tamiyo.batch_id": batch.batch_id, "tamiyo.items": len(batch.items)},
            ) as span:
                value = self.core.encoder.encode(batch)
                key = self.config.replay_id.encode()
                await kafka.producer.send_and_wait(self.topics.batches, value, key=key, headers=headers_for(span))
            instruments().records_out.add(1, {"topic": self.topics.batches})

    async def _commit(self, kafka: _Clients, offsets: Mapping[Hashable, int]) -> None:
        if offsets:
            await kafka.trajectories.commit(dict(offsets))
            self.core.committed(offsets)

    async def _send_telemetry(self, kafka: _Clients) -> None:
        value = self.core.telemetry_value(self.deadletter.counts)
        await kafka.producer.send(self.topics.telemetry, value, key=b"replay")

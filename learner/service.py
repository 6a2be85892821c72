"""The learner service: the Kafka loop around `LearnerCore` (`batches` in; `priorities`, `policy`,
`telemetry` and `deadletter` out).

Per record: the core decodes the batch in a thread of its own, up to PREFETCH records ahead (decoding
and decompression stay off the training's critical path), then trains on it in a worker thread (Kafka
heartbeats keep flowing during long updates).  The loop records the traces and metrics, writes a
checkpoint when due, and hands what the core returns to a publisher task, which publishes it in update
order (acks and snapshots acknowledged by the broker, telemetry best-effort), dead-letters a rejected batch
and then commits the batch's offset (not the consumer's position, which is ahead by the prefetched
records).  Publishing runs behind the training, a few updates behind (PUBLISH_AHEAD): measured on the
host-sim preset, a learner that awaited each ack, snapshot and commit before its next update ran at a
third of its core's rate (92 ms of wall time per 32 x 20 batch against 34 ms of work).  With a
checkpoint directory it commits only once a checkpoint holds the updates the offsets cover (every
``checkpoint_every`` updates and at a clean stop): a learner killed in between restarts with ``--resume``
from the checkpoint and trains on the batches after it again, so no update that a commit claims is lost
(at-least-once learning).  A ``telemetry_sink`` (e.g. the CLI's TensorBoard writer) is handed each
telemetry record's value as it is published.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import SpanKind, Status, StatusCode

from tamiyo.bus.admin import list_topics
from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.deadletter import DeadLetterSink
from tamiyo.bus.observability import context_from_headers, context_from_traceparent, instruments, tracer
from tamiyo.bus.topic_pass import TopicMissing, read_tail_first
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.records import OutgoingRecord
from tamiyo.contracts.signing import PolicySigner, TrustedKeys
from tamiyo.contracts.topics import Topics
from tamiyo.learner.core import LOSS_NAMES, BatchOutcome, DecodedBatch, LearnerConfig, LearnerCore
from tamiyo.policy.newest import NewestVerified, NewestVersion
from tamiyo.policy.verification import SnapshotVerifier

log = logging.getLogger(__name__)
PREFETCH = 2  # batches decoded ahead of the one training


async def publish(producer: AIOKafkaProducer, records: list[OutgoingRecord]) -> None:
    """Send ``records`` in order: each acknowledged before the next, best-effort ones without waiting."""
    for rec in records:
        if rec.best_effort:
            with contextlib.suppress(KafkaError):
                await producer.send(rec.topic, rec.value, key=rec.key)
        else:
            await producer.send_and_wait(rec.topic, rec.value, key=rec.key)
            instruments().records_out.add(1, {"topic": rec.topic})


# Updates whose records may wait in the queue to be published while the next ones train (one more is being
# published, and one more may have trained and wait for room).  If publishing fails, the run ends with its
# error: what was still waiting is not published and its offsets stay uncommitted, so a `--resume`d learner
# trains on those batches again (at-least-once learning, at most PUBLISH_AHEAD + 2 batches twice).
PUBLISH_AHEAD = 4


@dataclass
class _Published:
    """What one update leaves to publish: the batch record it came from, its records in send order, why
    (some of) the record is dead-lettered, and whether a checkpoint already holds the update."""

    record: ConsumerRecord
    records: list[OutgoingRecord]
    rejected: LeylineError | ValueError | None
    checkpointed: bool


async def _put_unless_failed(
    queue: asyncio.Queue[_Published | None], item: _Published | None, publisher: asyncio.Task
) -> None:
    """Put ``item`` in the publisher's queue; if the publisher ends first (it failed), raise its error: a full
    queue that nobody takes from any more would otherwise hold the learner forever."""
    putting = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({putting, publisher}, return_when=asyncio.FIRST_COMPLETED)
    if not putting.done():
        putting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await putting
        publisher.result()  # raises the publisher's error
        raise RuntimeError("the publisher stopped before the learner did")  # it only returns after None
    putting.result()


class _Committer:
    """Offsets of applied batches, committed once what they cover is safe: at once, or with a checkpoint
    directory only once a checkpoint holds the updates (a learner killed in between re-reads those batches
    after ``--resume`` instead of losing their updates)."""

    def __init__(self, consumer: AIOKafkaConsumer, checkpoint_bound: bool) -> None:
        self.consumer = consumer
        self.checkpoint_bound = checkpoint_bound
        self.uncommitted: dict[TopicPartition, int] = {}

    async def applied(self, rec: ConsumerRecord, checkpointed: bool) -> None:
        self.uncommitted[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
        if checkpointed or not self.checkpoint_bound:
            await self.checkpointed()

    async def checkpointed(self) -> None:
        if self.uncommitted:
            await self.consumer.commit(self.uncommitted)
            self.uncommitted = {}


class LearnerService:
    def __init__(
        self,
        config: LearnerConfig,
        settings: KafkaSettings,
        topics: Topics,
        signer: PolicySigner,
        trusted: TrustedKeys | None = None,
        telemetry_sink: Callable[[bytes], None] | None = None,
    ) -> None:
        """``signer`` signs the snapshots it publishes; ``trusted`` (default: the signer's own public key)
        are the keys whose snapshots on the policy topic a restarted learner continues after;
        ``telemetry_sink`` gets the value of every telemetry record the learner publishes."""
        self.config = config
        self.settings = settings.with_client_id("tamiyo-learner")
        self.topics = topics
        self.trusted = trusted or signer.trusted()
        self.telemetry_sink = telemetry_sink
        self.core = LearnerCore(config, topics, signer)
        self.group_id = config.group_id or f"tamiyo-learner-{config.run_id or 'default'}"
        self.deadletter = DeadLetterSink(topics.deadletter, "learner")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-decode")

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, float]:
        stop = stop or asyncio.Event()
        cfg, core = self.config, self.core
        consumer = make_consumer(
            self.settings,
            self.topics.batches,
            group_id=self.group_id,
            max_poll_records=PREFETCH,
            session_timeout_ms=30_000,
        )
        # No linger: the few records an update makes (ack, snapshot, telemetry) go out at once; the replay's
        # in-flight slot is freed by the ack.
        producer = make_producer(self.settings, linger_ms=0)
        await producer.start()
        await consumer.start()
        started = last_batch = time.monotonic()
        seen_batch = False
        loop = asyncio.get_running_loop()
        # The next batch decodes in its own thread while the current one trains (PREFETCH records ahead).
        decoding: collections.deque[tuple[ConsumerRecord, asyncio.Future[DecodedBatch]]] = collections.deque()
        # What an update made is published, and its offset committed, behind the training, in update order.
        outgoing: asyncio.Queue[_Published | None] = asyncio.Queue(maxsize=PUBLISH_AHEAD)
        committer = _Committer(consumer, bool(cfg.checkpoint_dir))
        publisher = asyncio.create_task(self._publish_loop(producer, outgoing, committer), name="publisher")
        try:
            await self._continue_after_published()
            await publish(producer, core.start_records())
            while not stop.is_set():
                if publisher.done():  # a publish or commit failed: end the run with its error
                    publisher.result()
                if cfg.max_updates is not None and core.updates >= cfg.max_updates:
                    break
                if cfg.max_seconds is not None and time.monotonic() - started >= cfg.max_seconds:
                    break
                if len(decoding) < PREFETCH:  # top up before training, so the next batch decodes meanwhile
                    wait_ms = 0 if decoding else 200
                    fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=PREFETCH - len(decoding))
                    for rec in (r for records in fetched.values() for r in records):
                        decoding.append((rec, loop.run_in_executor(self._decoder, core.decode, rec.value)))
                if decoding:
                    seen_batch, last_batch = True, time.monotonic()
                    rec, future = decoding.popleft()
                    await _put_unless_failed(outgoing, await self._process(rec, await future), publisher)
                elif (
                    seen_batch
                    and cfg.stop_when_idle_s is not None
                    and time.monotonic() - last_batch > cfg.stop_when_idle_s
                ):
                    log.info("no batch for %.0fs: stopping", cfg.stop_when_idle_s)
                    break
            await _put_unless_failed(outgoing, None, publisher)
            await publisher  # everything trained on is published and its offsets are committed (or checkpoint-bound)
        finally:
            if not publisher.done():
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError, KafkaError, OSError):
                    await publisher
            with contextlib.suppress(KafkaError, OSError):
                await publish(producer, core.final_records())
                if core.checkpoint():
                    await committer.checkpointed()
            await consumer.stop()
            await producer.stop()
            self._decoder.shutdown(wait=False, cancel_futures=True)
        return core.summary()

    async def _publish_loop(
        self, producer: AIOKafkaProducer, outgoing: asyncio.Queue[_Published | None], committer: _Committer
    ) -> None:
        """Publish each update's records in order (acks and snapshots acknowledged by the broker), then commit
        what they cover: exactly what was applied (the consumer's position is ahead by the prefetched records)."""
        while (item := await outgoing.get()) is not None:
            if item.rejected is not None:
                await self.deadletter.send(producer, item.record, item.rejected)
            await self._publish(producer, item.records)
            await committer.applied(item.record, item.checkpointed)

    async def _continue_after_published(self) -> None:
        """Read the policy topic once (its tail first) and let the core continue after the newest version
        of its policy there (`LearnerCore.continue_after`): a restarted learner's versions stay newer."""
        core = self.core
        versions = NewestVersion(self.config.policy_id)
        verified = NewestVerified(SnapshotVerifier(self.trusted, self.config.policy_id, core.schema))

        def offer(value: bytes | None) -> None:
            versions.offer(value)
            verified.offer(value)

        def found() -> bool:
            return versions.version >= 0

        try:
            complete = await read_tail_first(self.settings, self.topics.policy, offer, found, "tamiyo-learner-start")
        except TopicMissing:
            if self.topics.policy not in await list_topics(self.settings):
                return  # nothing published yet
            complete = False  # the topic is there but its metadata did not arrive in time
        if not complete:
            # The newest may be unseen: a version handed out again would be ignored by every subscriber.
            raise TimeoutError(f"could not read {self.topics.policy} to its end")
        if versions.version >= 0:
            log.info("policy topic: %s", core.continue_after(versions.version, verified.newest))

    async def _process(self, rec: ConsumerRecord, decoded: DecodedBatch) -> _Published:
        """Train on one batch; what to publish about it, and whether a checkpoint now holds the update."""
        # Child of the replay's publish_batch span (the batch record carries its trace context).
        inst = instruments()
        with tracer().start_as_current_span(
            "learner.update", context=context_from_headers(rec.headers), kind=SpanKind.CONSUMER
        ) as span:
            inst.records_in.add(1, {"topic": rec.topic})
            outcome = await asyncio.to_thread(self.core.train, decoded)
            if outcome.rejected is not None:  # the record, or some of its items
                span.set_status(Status(StatusCode.ERROR, type(outcome.rejected).__name__))
            if not outcome.trained:  # only the priority-free ack, when the batch id is known
                return _Published(rec, outcome.records, outcome.rejected, checkpointed=False)
            span.set_attribute("tamiyo.batch_id", outcome.batch_id)
            self._record(outcome)
            # The checkpoint is taken here, before the next update changes the network and the optimizer.
            checkpointed = outcome.checkpoint_due and await asyncio.to_thread(self.core.checkpoint)
            return _Published(rec, outcome.records, outcome.rejected, checkpointed)

    async def _publish(self, producer: AIOKafkaProducer, records: list[OutgoingRecord]) -> None:
        """`publish`, after handing the telemetry among ``records`` to the sink."""
        if self.telemetry_sink is not None:
            for telemetry in (r.value for r in records if r.topic == self.topics.telemetry):
                self.telemetry_sink(telemetry)
        await publish(producer, records)

    def _record(self, outcome: BatchOutcome) -> None:
        """Metrics, and the last hop of each trajectory's trace: `learner.item`, with its policy lag."""
        inst = instruments()
        inst.decode_ms.record(outcome.decode_ms, {"payload_type": "SampledBatch"})
        if outcome.batch_latency_ms is not None:
            inst.batch_latency_ms.record(outcome.batch_latency_ms)
        for item in outcome.items:
            inst.policy_lag.record(item.policy_lag, {"algo": self.config.algo})
            with tracer().start_as_current_span(
                "learner.item", context=context_from_traceparent(item.trace_parent)
            ) as span:
                span.set_attribute("tamiyo.policy_lag", item.policy_lag)
        for name in LOSS_NAMES:
            value = outcome.metrics.get(name)
            if value is not None and math.isfinite(value):
                inst.learner_loss.set(value, {"name": name, "algo": self.config.algo})

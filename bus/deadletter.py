"""Send records a service cannot process to the `deadletter` topic, with the reason, and count them."""

from __future__ import annotations

import logging
import time
from collections import Counter

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from tamiyo.bus.observability import instruments
from tamiyo.contracts.codec import EnvelopeEncoder
from tamiyo.contracts.proto import leyline_pb2 as pb

log = logging.getLogger(__name__)
MAX_KEPT_VALUE_BYTES = 64 << 10  # enough to debug a record, not enough to re-amplify a bomb


class DeadLetterSink:
    """Counts by reason live here (telemetry reads them); the producer is the service's own, per send."""

    def __init__(self, topic: str, consumer_name: str) -> None:
        self.topic = topic
        self.consumer_name = consumer_name
        self.encoder = EnvelopeEncoder(source=f"{consumer_name}/deadletter")
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    async def send(self, producer: AIOKafkaProducer, record: ConsumerRecord, err: BaseException) -> None:
        reason = type(err).__name__
        self.counts[reason] += 1
        instruments().deadlettered.add(1, {"reason": reason, "topic": record.topic})
        value = record.value or b""
        letter = pb.DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            detail=str(err)[:1000],
            original_key=(record.key or b"")[:1024],
            original_value=value[:MAX_KEPT_VALUE_BYTES],
            original_size=len(value),
            failed_at_ns=time.time_ns(),
            consumer=self.consumer_name,
        )
        log.warning("dead-lettered %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, reason, err)
        await producer.send_and_wait(self.topic, self.encoder.encode(letter), key=record.key)

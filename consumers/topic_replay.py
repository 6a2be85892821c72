"""``tamiyo topic record|replay``: write a topic to a ``.tyrec`` file, re-publish records to another topic.

Replays keep keys, values and headers byte-for-byte and the order within each
source partition; the target topic is created when missing, with the configs
of its logical name (``*.batches``, ...).  ``rate`` paces the sends with a
`Pacer`.  The file format is `tamiyo.consumers.recording`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import Any

from aiokafka.admin import NewTopic

from tamiyo.bus.clients import KafkaSettings, make_admin, make_producer
from tamiyo.consumers.recording import RecordedRecord, RecordingWriter, open_recording
from tamiyo.consumers.topic_reader import ReadRange, TopicToolError, read_topic
from tamiyo.contracts.topics import TOPIC_CONFIGS

# Records up to the batches topic's max.message.bytes (64 MiB) plus protocol overhead.
REPLAY_MAX_REQUEST_BYTES = 80 << 20


async def record_topic(
    settings: KafkaSettings,
    topic: str,
    out_path: str,
    rng: ReadRange | None = None,
    *,
    follow: bool = False,
    stop: asyncio.Event | None = None,
    max_records: int | None = None,
    max_seconds: float | None = None,
    metadata_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Write the records of ``topic`` (a bounded range, or live with ``follow``) to a ``.tyrec`` file."""
    kw = {"follow": follow, "stop": stop, "max_records": max_records, "max_seconds": max_seconds}
    kw["metadata_timeout_s"] = metadata_timeout_s
    async with read_topic(settings, topic, rng, **kw) as (_reader, records):
        with RecordingWriter(out_path, [topic]) as writer:
            async for rec in records:
                writer.write(rec.recorded())
    return {"topic": topic, "out": out_path, "records": writer.count, "bytes": writer.bytes}


class Pacer:
    """At most ``rate`` records per second: the i-th `wait` (from 0) returns no earlier than t0 + i / rate.

    t0 is the time of the first `wait`, so the first record goes at once and
    the records never run ahead of that schedule (no burst at the start).  The
    schedule does not move: after a stall (a slow send) the records that are
    already due go without waiting until they are back on it.  ``rate=None``
    never waits.  ``clock`` and ``sleep`` are replaceable for tests.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise TopicToolError("--rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None
        self._n = 0

    async def wait(self) -> None:
        if self.rate is None:
            return
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n / self.rate
        if due > now:
            await self._sleep(due - now)
        self._n += 1


async def ensure_target_topic(
    settings: KafkaSettings, topic: str, partitions: int = 1, replication_factor: int = 1
) -> bool:
    """Create ``topic`` if it is missing (configs of its logical name, e.g. ``*.batches``); True if created."""
    admin = make_admin(settings.with_client_id("tamiyo-topic-admin"))
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            return False
        logical = topic.rsplit(".", 1)[-1]
        configs = dict(TOPIC_CONFIGS.get(logical, {}))
        resp = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor, topic_configs=configs)], timeout_ms=30_000
        )
        for topic_error in resp.topic_errors:
            if topic_error[1] not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a race with another creator)
                raise TopicToolError(f"creating {topic} failed: error code {topic_error[1]}")
        return True
    finally:
        await admin.close()


async def publish_records(
    settings: KafkaSettings,
    records: AsyncIterable[RecordedRecord] | Iterable[RecordedRecord],
    to_topic: str,
    *,
    rate: float | None = None,
    keep_timestamps: bool = False,
    stop: asyncio.Event | None = None,
    max_records: int | None = None,
) -> dict[str, Any]:
    """Re-publish records to ``to_topic``: same keys, values and headers byte-for-byte, in order.

    Partitions follow the keys (the producer's partitioner).  Timestamps are
    new unless ``keep_timestamps`` (old timestamps can fall out of retention at once).
    """
    stop = stop or asyncio.Event()
    pacer = Pacer(rate)
    producer = make_producer(
        settings.with_client_id("tamiyo-topic-replay"), max_request_size=REPLAY_MAX_REQUEST_BYTES, linger_ms=0
    )
    await producer.start()
    sent = 0
    pending: list[asyncio.Future] = []
    started = time.monotonic()
    try:

        async def one(rec: RecordedRecord) -> None:
            nonlocal sent
            await pacer.wait()
            headers = [(name, v if v is not None else b"") for name, v in rec.headers]
            fut = await producer.send(
                to_topic,
                rec.value,
                key=rec.key,
                headers=headers or None,
                timestamp_ms=rec.timestamp_ms if keep_timestamps and rec.timestamp_ms >= 0 else None,
            )
            pending.append(fut)
            sent += 1
            if len(pending) >= 256:
                await asyncio.gather(*pending)
                pending.clear()

        if isinstance(records, AsyncIterable):
            async for rec in records:
                if stop.is_set() or (max_records is not None and sent >= max_records):
                    break
                await one(rec)
        else:
            for rec in records:
                if stop.is_set() or (max_records is not None and sent >= max_records):
                    break
                await one(rec)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    return {"to": to_topic, "records": sent, "seconds": round(elapsed, 3), "rate": rate}


async def replay_topic(
    settings: KafkaSettings,
    topic: str,
    to_topic: str,
    rng: ReadRange | None = None,
    *,
    rate: float | None = None,
    keep_timestamps: bool = False,
    create: bool = True,
    stop: asyncio.Event | None = None,
    max_records: int | None = None,
    metadata_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Copy a bounded range of ``topic`` to ``to_topic`` (created like the source if missing)."""
    if topic == to_topic:
        raise TopicToolError("refusing to replay a topic onto itself")
    kw = {"stop": stop, "max_records": max_records, "metadata_timeout_s": metadata_timeout_s}
    async with read_topic(settings, topic, rng, **kw) as (reader, records):
        created = await ensure_target_topic(settings, to_topic, len(reader.all_partitions)) if create else False

        async def converted() -> AsyncGenerator[RecordedRecord, None]:
            async for rec in records:
                yield rec.recorded()

        gen = converted()
        async with contextlib.aclosing(gen):
            result = await publish_records(
                settings, gen, to_topic, rate=rate, keep_timestamps=keep_timestamps, stop=stop
            )
    return {"from": topic, "created": created, **result}


async def replay_file(
    settings: KafkaSettings,
    path: str,
    to_topic: str,
    *,
    rate: float | None = None,
    keep_timestamps: bool = False,
    create: bool = True,
    partitions: int = 1,
    stop: asyncio.Event | None = None,
    max_records: int | None = None,
) -> dict[str, Any]:
    """Publish the records of a ``.tyrec`` recording to ``to_topic``."""
    with open_recording(path) as (header, records):
        created = await ensure_target_topic(settings, to_topic, partitions) if create else False
        result = await publish_records(
            settings,
            records,
            to_topic,
            rate=rate,
            keep_timestamps=keep_timestamps,
            stop=stop,
            max_records=max_records,
        )
    return {"from_file": path, "source_topics": header.get("source_topics", []), "created": created, **result}

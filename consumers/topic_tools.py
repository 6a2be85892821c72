"""Topic tools for debugging: read a range of a topic, follow it, count it, record it, replay it.

The Kafka side of ``tamiyo topic dump|tail|stats|record|replay`` (rendering is
in `tamiyo.consumers.render`, the file format in `tamiyo.consumers.recording`).
Readers never join a consumer group and never commit: debugging a topic does
not move any service's offsets.

Ranges (`ReadRange`): per partition, start at ``from_offset`` (clamped to the
retained log), at the first record with timestamp >= ``from_time_ms``, at
``end - last`` (the last N records *of each partition*), or at the beginning;
bounded reads stop at the end offsets seen when the read started, so a busy
topic still gives a finite dump.  ``follow=True`` starts at the end (unless a
start is given) and keeps reading until ``stop``, ``max_records`` or
``max_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from tamiyo.bus.clients import KafkaSettings, make_admin, make_consumer, make_producer
from tamiyo.consumers.recording import RecordedRecord, RecordingWriter, open_recording
from tamiyo.consumers.render import classify_value, encoding_name, iso_ms
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.topics import TOPIC_CONFIGS

log = logging.getLogger(__name__)

# Records up to the batches topic's max.message.bytes (64 MiB) plus protocol overhead.
REPLAY_MAX_REQUEST_BYTES = 80 << 20


class TopicToolError(RuntimeError):
    """A user-facing problem (unknown topic or partition, bad time): one line, exit code 2."""


def parse_time(text: str) -> int:
    """Epoch milliseconds from ``1764120000000`` or ISO 8601 (``2026-11-26T01:00:00Z``; naive = UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as err:
        raise TopicToolError(f"not an ISO 8601 time or epoch milliseconds: {text!r}") from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class ReadRange:
    from_offset: int | None = None
    from_time_ms: int | None = None
    last: int | None = None
    partitions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.from_offset, self.from_time_ms, self.last)]
        if sum(given) > 1:
            raise TopicToolError("give at most one of --from-offset, --from-time, --last")
        if self.last is not None and self.last < 0:
            raise TopicToolError("--last must be >= 0")


@dataclass
class Record:
    """A consumed record, detached from aiokafka (what the tools pass around)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def recorded(self) -> RecordedRecord:
        return RecordedRecord(
            self.topic, self.partition, self.offset, self.timestamp, self.key, self.value, list(self.headers)
        )


class TopicReader:
    """Assign (no group) the partitions of one topic, seek per `ReadRange`, iterate records.

    ``async with TopicReader(...) as r:`` then ``async for rec in r.records(): ...``;
    ``r.beginning``/``r.end``/``r.start`` hold the offsets per partition number.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        rng: ReadRange | None = None,
        *,
        follow: bool = False,
        stop: asyncio.Event | None = None,
        max_records: int | None = None,
        max_seconds: float | None = None,
        metadata_timeout_s: float = 10.0,
        idle_timeout_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.rng = rng or ReadRange()
        self.follow = follow
        self.stop = stop or asyncio.Event()
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.metadata_timeout_s = metadata_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.consumer: AIOKafkaConsumer | None = None
        self.all_partitions: list[int] = []
        self.beginning: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.start: dict[int, int] = {}
        self.truncated = False  # a bounded read gave up before its end offsets (idle timeout)

    async def __aenter__(self) -> TopicReader:
        self.consumer = make_consumer(self.settings.with_client_id("tamiyo-topic"), group_id=None, max_poll_records=500)
        await self.consumer.start()
        try:
            await self._assign()
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def _assign(self) -> None:
        c = self.consumer
        assert c is not None
        deadline = time.monotonic() + self.metadata_timeout_s
        parts = c.partitions_for_topic(self.topic)
        while not parts:
            if time.monotonic() > deadline:
                raise TopicToolError(f"topic {self.topic!r} does not exist (no metadata)")
            await asyncio.sleep(0.2)
            await c._client.force_metadata_update()  # aiokafka has no public call for this
            parts = c.partitions_for_topic(self.topic)
        self.all_partitions = sorted(parts)
        wanted = self.all_partitions
        if self.rng.partitions is not None:
            missing = sorted(set(self.rng.partitions) - set(parts))
            if missing:
                raise TopicToolError(f"topic {self.topic!r} has no partition {missing} (has {self.all_partitions})")
            wanted = sorted(set(self.rng.partitions))
        all_tps = [TopicPartition(self.topic, p) for p in self.all_partitions]
        begin = await c.beginning_offsets(all_tps)
        end = await c.end_offsets(all_tps)
        self.beginning = {tp.partition: off for tp, off in begin.items()}
        self.end = {tp.partition: off for tp, off in end.items()}
        tps = [TopicPartition(self.topic, p) for p in wanted]
        r = self.rng
        if r.from_time_ms is not None:
            found = await c.offsets_for_times({tp: r.from_time_ms for tp in tps})
            starts = {tp.partition: (found[tp].offset if found.get(tp) else self.end[tp.partition]) for tp in tps}
        elif r.from_offset is not None:
            starts = {p: min(max(r.from_offset, self.beginning[p]), self.end[p]) for p in wanted}
        elif r.last is not None:
            starts = {p: max(self.beginning[p], self.end[p] - r.last) for p in wanted}
        elif self.follow:
            starts = {p: self.end[p] for p in wanted}
        else:
            starts = {p: self.beginning[p] for p in wanted}
        self.start = starts
        c.assign(tps)
        for tp in tps:
            c.seek(tp, starts[tp.partition])

    async def records(self) -> AsyncIterator[Record]:
        c = self.consumer
        assert c is not None, "use TopicReader as an async context manager"
        started = time.monotonic()
        count = 0
        active = {p for p, s in self.start.items() if s < self.end[p]}
        last_progress = time.monotonic()
        while not self.stop.is_set():
            if not self.follow and not active:
                return
            if self.max_records is not None and count >= self.max_records:
                return
            if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                return
            batch = await c.getmany(timeout_ms=200, max_records=500)
            for tp, recs in batch.items():
                p = tp.partition
                for rec in recs:
                    if not self.follow and rec.offset >= self.end[p]:
                        break
                    yield Record(
                        rec.topic,
                        rec.partition,
                        rec.offset,
                        rec.timestamp,
                        rec.key,
                        rec.value,
                        tuple(rec.headers or ()),
                    )
                    count += 1
                    if self.max_records is not None and count >= self.max_records:
                        return
                if recs:
                    last_progress = time.monotonic()
                    if not self.follow and recs[-1].offset >= self.end[p] - 1:
                        active.discard(p)
                        c.pause(tp)
            if not self.follow and not batch and active:
                # Compaction or aborted transactions can leave offsets with no record before the end.
                for p in list(active):
                    tp = TopicPartition(self.topic, p)
                    if await c.position(tp) >= self.end[p]:
                        active.discard(p)
                        c.pause(tp)
                if active and time.monotonic() - last_progress > self.idle_timeout_s:
                    log.warning(
                        "no records for %.0fs before the end offsets of %s; stopping", self.idle_timeout_s, active
                    )
                    self.truncated = True
                    return


@contextlib.asynccontextmanager
async def read_topic(settings: KafkaSettings, topic: str, rng: ReadRange | None = None, **kw: Any):
    """``async with read_topic(...) as (reader, records):`` with the generator closed on exit."""
    async with TopicReader(settings, topic, rng, **kw) as reader:
        gen = reader.records()
        async with contextlib.aclosing(gen):
            yield reader, gen


# ---------------------------------------------------------------- stats


def _raw_schema_version(value: bytes) -> int | None:
    env = pb.EventEnvelope()
    try:
        env.ParseFromString(value)
    except Exception:
        return None
    return env.schema_version


class StatsAccumulator:
    """Counts over records (pure; `topic_stats` feeds it from Kafka)."""

    def __init__(self) -> None:
        self.count = 0
        self.sizes: list[int] = []
        self.payload_types: Counter[str] = Counter()
        self.schema_versions: Counter[str] = Counter()
        self.encodings: Counter[str] = Counter()
        self.undecodable: Counter[str] = Counter()
        self.producers: set[str] = set()
        self.per_partition: Counter[int] = Counter()
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add(self, rec: Record) -> None:
        self.count += 1
        self.per_partition[rec.partition] += 1
        self.sizes.append(len(rec.value) if rec.value is not None else 0)
        if rec.timestamp is not None and rec.timestamp >= 0:
            self.first_ts = rec.timestamp if self.first_ts is None else min(self.first_ts, rec.timestamp)
            self.last_ts = rec.timestamp if self.last_ts is None else max(self.last_ts, rec.timestamp)
        env, reason = classify_value(rec.value)
        if env is not None:
            self.payload_types[env.payload_type] += 1
            self.schema_versions[str(env.schema_version)] += 1
            self.encodings[encoding_name(env.content_encoding)] += 1
            self.producers.add(env.producer_id)
        elif reason == "SchemaVersionError" and rec.value is not None:
            self.schema_versions[str(_raw_schema_version(rec.value))] += 1
        if reason is not None:
            self.undecodable[reason] += 1

    def summary(self) -> dict[str, Any]:
        sizes = self.sizes
        return {
            "records": self.count,
            "bytes": {
                "total": sum(sizes),
                "min": min(sizes) if sizes else 0,
                "mean": round(statistics.fmean(sizes), 1) if sizes else 0.0,
                "max": max(sizes) if sizes else 0,
            },
            "payload_types": dict(self.payload_types.most_common()),
            "schema_versions": dict(sorted(self.schema_versions.items())),
            "content_encodings": dict(self.encodings.most_common()),
            "undecodable": {"total": sum(self.undecodable.values()), "by_reason": dict(self.undecodable.most_common())},
            "producers": len(self.producers),
            "first_timestamp": iso_ms(self.first_ts),
            "last_timestamp": iso_ms(self.last_ts),
        }


async def consumer_group_lag(settings: KafkaSettings, topic: str, end: dict[int, int]) -> dict[str, Any]:
    """Per consumer group with committed offsets on ``topic``: committed, end and lag per partition."""
    admin = make_admin(settings.with_client_id("tamiyo-topic-admin"))
    await admin.start()
    out: dict[str, Any] = {}
    try:
        groups = await admin.list_consumer_groups()
        for group in sorted({g[0] for g in groups}):
            offsets = await admin.list_consumer_group_offsets(group)
            mine = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            if not mine:
                continue
            parts = {}
            for p, committed in sorted(mine.items()):
                e = end.get(p)
                lag = (e - committed) if (e is not None and committed >= 0) else None
                parts[str(p)] = {"committed": committed, "end": e, "lag": lag}
            out[group] = {
                "partitions": parts,
                "total_lag": sum(v["lag"] for v in parts.values() if v["lag"] is not None),
            }
    finally:
        await admin.close()
    return out


async def topic_stats(
    settings: KafkaSettings,
    topic: str,
    rng: ReadRange | None = None,
    *,
    max_records: int | None = None,
    stop: asyncio.Event | None = None,
    groups: bool = True,
    metadata_timeout_s: float = 10.0,
) -> dict[str, Any]:
    acc = StatsAccumulator()
    kw = {"max_records": max_records, "stop": stop, "metadata_timeout_s": metadata_timeout_s}
    async with read_topic(settings, topic, rng, **kw) as (reader, records):
        async for rec in records:
            acc.add(rec)
    out: dict[str, Any] = {"topic": topic, **acc.summary()}
    out["partitions"] = {
        str(p): {
            "beginning": reader.beginning[p],
            "end": reader.end[p],
            "retained": reader.end[p] - reader.beginning[p],
            "scanned": acc.per_partition.get(p, 0),
        }
        for p in reader.all_partitions
    }
    out["complete"] = not reader.truncated and (max_records is None or acc.count < max_records)
    if groups:
        out["consumer_groups"] = await consumer_group_lag(settings, topic, reader.end)
    return out


# ---------------------------------------------------------------- record / replay


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


class RateLimiter:
    """At most ``rate`` calls per second on average, no bursts: call i waits until t0 + i / rate."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise TopicToolError("--rate must be positive")
        self.rate = rate
        self._t0: float | None = None
        self._n = 0

    async def wait(self) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n / self.rate
        if due > now:
            await asyncio.sleep(due - now)
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
    limiter = RateLimiter(rate)
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
            await limiter.wait()
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

        async def converted() -> AsyncIterator[RecordedRecord]:
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

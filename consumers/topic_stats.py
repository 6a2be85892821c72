"""``tamiyo topic stats``: counts over a range of a topic, and the consumer groups' lag on it.

`StatsAccumulator` is pure (records in, a JSON-ready summary out, no Kafka);
`topic_stats` feeds it from a `TopicReader` and adds the partitions' offsets
and, per consumer group with offsets on the topic, committed/end/lag.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from typing import Any

from tamiyo.bus.clients import KafkaSettings, make_admin
from tamiyo.consumers.render import classify_value, encoding_name, iso_ms
from tamiyo.consumers.topic_reader import ReadRange, Record, read_topic
from tamiyo.contracts.proto import leyline_pb2 as pb


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

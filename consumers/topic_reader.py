"""Read a range of one topic, or follow it: the reading side of the ``tamiyo topic`` tools.

Readers never join a consumer group and never commit: debugging a topic does
not move any service's offsets.  Statistics over what is read are in
`tamiyo.consumers.topic_stats`, recording and replaying in
`tamiyo.consumers.topic_replay`, rendering in `tamiyo.consumers.render`.

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
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tamiyo.bus.clients import KafkaSettings, make_consumer, wait_for_partitions
from tamiyo.consumers.recording import RecordedRecord

log = logging.getLogger(__name__)


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
        parts = await wait_for_partitions(c, self.topic, timeout_s=self.metadata_timeout_s)
        if not parts:
            raise TopicToolError(f"topic {self.topic!r} does not exist (no metadata)")
        self.all_partitions = sorted(parts)
        wanted = self.all_partitions
        if self.rng.partitions is not None:
            missing = sorted(set(self.rng.partitions) - parts)
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

    async def records(self) -> AsyncGenerator[Record, None]:
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
async def read_topic(
    settings: KafkaSettings, topic: str, rng: ReadRange | None = None, **kw: Any
) -> AsyncIterator[tuple[TopicReader, AsyncGenerator[Record, None]]]:
    """``async with read_topic(...) as (reader, records):`` with the generator closed on exit.

    ``kw`` are `TopicReader`'s keyword arguments (``follow``, ``stop``, ``max_records``, ...).
    """
    async with TopicReader(settings, topic, rng, **kw) as reader:
        gen = reader.records()
        async with contextlib.aclosing(gen):
            yield reader, gen

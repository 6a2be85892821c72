"""ReliableSender keeps submit order on the wire, with many records in flight.

The fifo replay de-duplicates by each producer's increasing sequence and drops a record that arrives
behind a higher one, so a reordering sender silently loses experience (it lost ~43% of a 128-env
actor's unrolls before the hand-over to the producer was serialised).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.clients import make_consumer
from tamiyo.bus.delivery import ReliableSender
from tamiyo.contracts.topics import Topics

pytestmark = pytest.mark.broker


async def test_records_reach_kafka_in_submit_order_with_many_in_flight(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    count = 300
    sender = ReliableSender(kafka_settings, max_in_flight=64)
    await sender.start()
    try:
        for i in range(count):
            await sender.slot()
            # Larger than the producer's batch size, so sends wait for the accumulator to drain.
            value = i.to_bytes(4, "big") + os.urandom(40_000)
            sender.submit(topics.trajectories, value, key=b"one-producer")
        await sender.wait_all()
    finally:
        await sender.stop()

    consumer = make_consumer(kafka_settings, topics.trajectories, group_id=None)
    await consumer.start()
    order: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(order) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                order.extend(int.from_bytes(r.value[:4], "big") for r in records)
    finally:
        await consumer.stop()
    assert order == list(range(count))


async def test_sender_order_holds_for_concurrent_submitters(kafka_settings, run_name):
    """Two coroutines submitting to one sender: each one's records stay in its own order."""
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    sender = ReliableSender(kafka_settings, max_in_flight=32)
    await sender.start()

    async def submit(tag: bytes) -> None:
        for i in range(150):
            await sender.slot()
            sender.submit(topics.trajectories, tag + i.to_bytes(4, "big") + os.urandom(30_000), key=b"k")
            await asyncio.sleep(0)

    try:
        await asyncio.gather(submit(b"a"), submit(b"b"))
        await sender.wait_all()
    finally:
        await sender.stop()
    consumer = make_consumer(kafka_settings, topics.trajectories, group_id=None)
    await consumer.start()
    seen: dict[bytes, list[int]] = {b"a": [], b"b": []}
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, seen.values())) < 300 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    seen[r.value[:1]].append(int.from_bytes(r.value[1:5], "big"))
    finally:
        await consumer.stop()
    assert seen == {b"a": list(range(150)), b"b": list(range(150))}

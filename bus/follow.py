"""Follow a compacted topic from its beginning, newest record first: how services track the policy topic.

No consumer group and no commits: every (re)started follower reads the whole retained topic, which
compaction keeps to about the latest record per key.  Within each fetch only the newest records matter
(older ones are superseded), so ``accept`` is offered a partition's records newest first until it
takes one.  ``accept`` runs in a worker thread: checking and loading a snapshot must not stall the
caller's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer


async def follow_newest(
    settings: KafkaSettings,
    topic: str,
    accept: Callable[[bytes | None], bool],
    stop: asyncio.Event,
    client_id: str = "tamiyo-follower",
) -> None:
    """Until ``stop``: hand records of ``topic`` to ``accept`` (True = taken, skip the older ones).

    A tombstone (``None`` value) is offered too: ``accept`` refuses it like any undecodable record."""
    consumer = make_consumer(settings.with_client_id(client_id), group_id=None)
    await consumer.start()
    try:
        if not await assign_from_beginning(consumer, topic, stop, timeout_s=float("inf")):
            return
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in reversed(records):
                    if await asyncio.to_thread(accept, rec.value):
                        break
    finally:
        await consumer.stop()

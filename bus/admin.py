"""Create a run's topics idempotently, with the configs each topic needs."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import for_code

from tamiyo.bus.clients import KafkaSettings, make_admin, make_consumer, wait_for_partitions
from tamiyo.contracts.topics import TOPIC_CONFIGS, Topics

TOPIC_ALREADY_EXISTS = 36


class TopicAdminError(RuntimeError):
    pass


async def ensure_topics(
    settings: KafkaSettings,
    topics: Topics,
    *,
    partitions: int = 1,
    trajectory_partitions: int | None = None,
    replication_factor: int = 1,
) -> dict[str, str]:
    """Create every topic of the run that does not exist yet; returns logical -> topic name.

    `trajectories` may get more partitions (actors are keyed by id, so more
    partitions spread them over replay consumers); `policy` is compacted.
    """
    admin = make_admin(settings.with_client_id("tamiyo-admin"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for logical, name in topics.all().items():
            if name in existing:
                continue
            n = trajectory_partitions if (logical == "trajectories" and trajectory_partitions) else partitions
            wanted.append(NewTopic(name, n, replication_factor, topic_configs=dict(TOPIC_CONFIGS[logical])))
        if wanted:
            response = await admin.create_topics(wanted, timeout_ms=30_000)
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise TopicAdminError(f"creating {name} failed: {for_code(code).__name__}")
    finally:
        await admin.close()
    return topics.all()


async def list_topics(settings: KafkaSettings) -> list[str]:
    admin = make_admin(settings.with_client_id("tamiyo-admin"))
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


async def topic_has_records(settings: KafkaSettings, topic: str) -> bool:
    """True if ``topic`` exists and some partition of it has ever held a record (end offset > 0)."""
    if topic not in await list_topics(settings):
        return False
    consumer = make_consumer(settings.with_client_id("tamiyo-admin"), group_id=None)
    await consumer.start()
    try:
        # A fresh consumer's metadata does not know the topic yet (partitions_for_topic is None until a
        # refresh), which read as "no records" and let a second run reuse the first one's topics.
        partitions = await wait_for_partitions(consumer, topic, timeout_s=10.0)
        tps = [TopicPartition(topic, p) for p in partitions]
        return bool(tps) and any(offset > 0 for offset in (await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()

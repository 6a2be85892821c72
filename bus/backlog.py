"""Back-pressure by consumer lag: how many records of a topic a consumer group has not yet taken.

An actor that outruns the learner fills the pipeline with experience that is stale by the time it is
learned from (the fifo replay drops it: measured, ~44% of the frames the host-sim actor produced were
thrown away when it stepped 128 envs against one learner on 2 cores, and the CPU they cost was taken
from the learner).  The fifo replay stops consuming while its queue is full, so what the learner has
not caught up with waits in Kafka, visible as the replay group's lag on `trajectories`; an actor that
waits while that lag is above a bound keeps the staleness bounded and spends no CPU on frames that
would be dropped.  One lag read is two small broker requests (committed offsets, end offsets); the group's
coordinator is looked up once and again only after an error (it was a third request per read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from tamiyo.bus.clients import KafkaSettings, make_admin, make_consumer, wait_for_partitions


def records_waiting(committed: Mapping[int, int], begin: Mapping[int, int], end: Mapping[int, int]) -> int:
    """Records between each partition's committed offset (or its start, before the first commit) and its end."""
    total = 0
    for partition, last in end.items():
        start = committed.get(partition, -1)
        if start < 0:
            start = begin.get(partition, 0)
        total += max(0, last - start)
    return total


class GroupBacklog:
    """Reads ``group``'s lag on ``topic`` (start it inside the running event loop, as aiokafka requires)."""

    def __init__(self, settings: KafkaSettings, topic: str, group: str) -> None:
        self.settings = settings.with_client_id(f"{settings.client_id}-backlog")
        self.topic = topic
        self.group = group
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[int] = []
        self._coordinator: int | None = None  # the group coordinator's node id, once found

    async def start(self) -> None:
        self._admin = make_admin(self.settings)
        await self._admin.start()
        self._consumer = make_consumer(self.settings, group_id=None)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def waiting(self) -> int:
        """Records of the topic the group has not committed yet (UnknownTopicOrPartitionError when the
        topic does not show up within 10 s)."""
        assert self._admin is not None and self._consumer is not None, "start() first"
        if not self._partitions:
            # A fresh consumer does not know a just-created topic until a metadata refresh: reading that
            # as "nothing waits" let an actor run two collects past its bound (measured, in tests).
            self._partitions = sorted(await wait_for_partitions(self._consumer, self.topic, timeout_s=10.0))
            if not self._partitions:
                raise UnknownTopicOrPartitionError(f"no partitions for {self.topic}")
        tps = [TopicPartition(self.topic, p) for p in self._partitions]
        offsets = await self._group_offsets(tps)
        committed = {tp.partition: meta.offset for tp, meta in offsets.items()}
        end = {tp.partition: off for tp, off in (await self._consumer.end_offsets(tps)).items()}
        begin: dict[int, int] = {}
        if any(committed.get(p, -1) < 0 for p in end):
            begin = {tp.partition: off for tp, off in (await self._consumer.beginning_offsets(tps)).items()}
        return records_waiting(committed, begin, end)

    async def _group_offsets(self, tps: list[TopicPartition], attempts: int = 5) -> dict:
        """The group's committed offsets; a retriable error (the group coordinator still loading on a
        fresh broker, or moving) is retried a few times before it is raised."""
        assert self._admin is not None
        for attempt in range(attempts):
            try:
                if self._coordinator is None:
                    self._coordinator = await self._admin.find_coordinator(self.group)
                offsets = await self._admin.list_consumer_group_offsets(self.group, self._coordinator, partitions=tps)
                if set(offsets) >= set(tps) or attempt == attempts - 1:
                    return offsets
                # A coordinator that moved answers OffsetFetch v2+ with a top-level error and no partitions,
                # which aiokafka returns as an empty result instead of raising: look it up again.
                self._coordinator = None
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            except KafkaError as err:
                self._coordinator = None  # it may have moved: look it up again
                if not err.retriable or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def wait_below(
        self, limit: int, stop: asyncio.Event, poll_s: float = 0.05, not_sent: Callable[[], int] = lambda: 0
    ) -> float:
        """Wait until at most ``limit`` records wait (or ``stop`` is set); returns the seconds waited.
        ``not_sent()``: records of the caller's own not yet in Kafka (its outbox), counted as waiting."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not stop.is_set():
            # Own records first, the broker's end offsets after: a record that lands between the two reads
            # is then counted twice (one more poll) instead of not at all.  Read the other way round, a
            # record in flight at the lag read and acknowledged before the outbox read was missed, and an
            # actor ran three collects past its bound (seen in CI).
            pending = not_sent()
            if await self.waiting() + pending <= limit:
                break
            await asyncio.sleep(poll_s)
        return loop.time() - t0

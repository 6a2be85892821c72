"""Consumer-lag back-pressure: the pure count, and the lag a real broker reports for a group."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.backlog import GroupBacklog, records_waiting
from tamiyo.bus.clients import make_consumer, make_producer
from tamiyo.contracts.topics import Topics


def test_records_waiting_counts_from_the_commit_or_the_start():
    assert records_waiting({0: 5, 1: 7}, {}, {0: 9, 1: 7}) == 4
    assert records_waiting({0: -1}, {0: 3}, {0: 10}) == 7  # no commit yet: from the partition's start
    assert records_waiting({}, {0: 0, 1: 2}, {0: 4, 1: 2}) == 4
    assert records_waiting({0: 12}, {}, {0: 10}) == 0  # a commit past a (truncated) end is not negative


@given(st.dictionaries(st.integers(0, 5), st.tuples(st.integers(0, 50), st.integers(-1, 100), st.integers(0, 100))))
def test_records_waiting_against_a_per_partition_sum(parts):
    begin = {p: b for p, (b, _, _) in parts.items()}
    committed = {p: c for p, (_, c, _) in parts.items()}
    end = {p: b + e for p, (b, _, e) in parts.items()}
    want = sum(max(0, end[p] - (committed[p] if committed[p] >= 0 else begin[p])) for p in parts)
    assert records_waiting(committed, begin, end) == want


class _LandingDuringTheRead(GroupBacklog):
    """A backlog whose lag read sees the end offsets from before four in-flight records landed, while
    they land (leave the sender) during that read: the race an actor hit in CI."""

    def __init__(self) -> None:
        self.in_kafka, self.in_flight, self.reads = 0, 4, 0

    async def waiting(self) -> int:
        self.reads += 1
        end_before = self.in_kafka
        self.in_kafka, self.in_flight = self.in_kafka + self.in_flight, 0
        return end_before


async def test_wait_below_never_misses_records_that_land_between_its_two_reads():
    backlog, stop = _LandingDuringTheRead(), asyncio.Event()
    waited = asyncio.create_task(backlog.wait_below(3, stop, poll_s=0.01, not_sent=lambda: backlog.in_flight))
    await asyncio.sleep(0.1)
    assert not waited.done() and backlog.reads > 1  # 4 records wait, whichever read saw them
    stop.set()
    await waited


@pytest.mark.broker
async def test_group_backlog_follows_produced_and_committed_offsets(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics, trajectory_partitions=2)
    group = f"g-{run_name}"
    backlog = GroupBacklog(kafka_settings, topics.trajectories, group)
    await backlog.start()
    producer = make_producer(kafka_settings)
    await producer.start()
    consumer = make_consumer(kafka_settings, group_id=group)
    await consumer.start()
    consumer.assign([TopicPartition(topics.trajectories, p) for p in (0, 1)])  # commits without a rebalance
    try:
        assert await backlog.waiting() == 0
        for i in range(10):
            await producer.send_and_wait(topics.trajectories, b"x", partition=i % 2)
        assert await backlog.waiting() == 10  # nothing committed: every record waits
        await consumer.commit({TopicPartition(topics.trajectories, 0): 3, TopicPartition(topics.trajectories, 1): 5})
        assert await backlog.waiting() == 2
        stop = asyncio.Event()
        waited = asyncio.create_task(backlog.wait_below(0, stop, poll_s=0.02))
        await asyncio.sleep(0.2)
        assert not waited.done()
        await consumer.commit({TopicPartition(topics.trajectories, 0): 5})
        assert await asyncio.wait_for(waited, timeout=5) >= 0.2
        assert await backlog.wait_below(0, stop) < 0.5  # already below: returns at once
    finally:
        await consumer.stop()
        await producer.stop()
        await backlog.stop()


def test_a_coordinator_that_moved_is_looked_up_again():
    """OffsetFetch v2+ from a coordinator that moved comes back as an empty result (aiokafka raises nothing):
    the cached coordinator is dropped and looked up again instead of counting the topic from its start
    (found in review)."""
    from aiokafka import TopicPartition

    from tamiyo.bus.backlog import GroupBacklog
    from tamiyo.bus.clients import KafkaSettings

    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]

    class MovingCoordinator:
        def __init__(self) -> None:
            self.lookups = 0
            self.asked: list[int | None] = []

        async def find_coordinator(self, group: str) -> int:
            self.lookups += 1
            return self.lookups  # a new node id after every lookup

        async def list_consumer_group_offsets(self, group, coordinator, partitions):
            self.asked.append(coordinator)
            return {} if coordinator == 1 else {tp: object() for tp in partitions}

    backlog = GroupBacklog(KafkaSettings("127.0.0.1:1"), "t", "g")
    admin = MovingCoordinator()
    backlog._admin = admin  # type: ignore[assignment]
    offsets = asyncio.run(backlog._group_offsets(tps))
    assert set(offsets) == set(tps) and admin.asked == [1, 2] and admin.lookups == 2
    asyncio.run(backlog._group_offsets(tps))  # the found coordinator is kept
    assert admin.lookups == 2 and admin.asked == [1, 2, 2]

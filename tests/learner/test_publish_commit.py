"""The learner service's offset bookkeeping behind its publisher (no broker): an applied batch is committed
at once, or with a checkpoint directory only once a checkpoint holds it, and always as offset + 1 of the
newest applied batch per partition (never the consumer's position, which is ahead by the prefetch)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from tamiyo.learner.service import _Committer


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def _rec(offset: int, partition: int = 0) -> SimpleNamespace:
    return SimpleNamespace(topic="batches", partition=partition, offset=offset)


def test_without_checkpoints_every_applied_batch_is_committed_at_once():
    consumer = RecordingConsumer()
    committer = _Committer(consumer, checkpoint_bound=False)  # type: ignore[arg-type]

    async def run() -> None:
        for offset in (4, 5, 6):
            await committer.applied(_rec(offset), checkpointed=False)

    asyncio.run(run())
    tp = TopicPartition("batches", 0)
    assert consumer.commits == [{tp: 5}, {tp: 6}, {tp: 7}]


def test_with_checkpoints_nothing_is_committed_until_a_checkpoint_holds_it():
    consumer = RecordingConsumer()
    committer = _Committer(consumer, checkpoint_bound=True)  # type: ignore[arg-type]

    async def run() -> None:
        await committer.applied(_rec(10), checkpointed=False)
        await committer.applied(_rec(3, partition=1), checkpointed=False)
        await committer.applied(_rec(11), checkpointed=False)
        assert consumer.commits == []
        await committer.applied(_rec(12), checkpointed=True)  # the checkpoint holds 10, 11 and 12 (and 3)
        await committer.applied(_rec(13), checkpointed=False)
        await committer.checkpointed()  # a clean stop's final checkpoint

    asyncio.run(run())
    p0, p1 = TopicPartition("batches", 0), TopicPartition("batches", 1)
    assert consumer.commits == [{p0: 13, p1: 4}, {p0: 14}]


def test_a_failed_publisher_ends_the_learner_instead_of_leaving_it_waiting_for_room():
    """The queue is full and the publisher fails: putting the next update must raise the publisher's error,
    not wait forever for room (found in review: the learner hung, still heartbeating, on a Kafka error)."""
    from tamiyo.learner.service import _put_unless_failed

    async def run() -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        await queue.put("waiting")

        async def failing_publisher() -> None:
            await asyncio.sleep(0.05)
            raise ConnectionError("broker away")

        publisher = asyncio.create_task(failing_publisher())
        try:
            await asyncio.wait_for(_put_unless_failed(queue, "next", publisher), timeout=5)
        except ConnectionError as err:
            assert "broker away" in str(err)
        else:
            raise AssertionError("the failed publisher went unnoticed")
        assert queue.qsize() == 1  # the update that could not be queued was not queued later either

    asyncio.run(run())


def test_an_update_is_queued_when_there_is_room():
    from tamiyo.learner.service import _put_unless_failed

    async def run() -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=2)
        publisher = asyncio.create_task(asyncio.sleep(60))
        await _put_unless_failed(queue, "a", publisher)
        assert queue.get_nowait() == "a" and not publisher.done()
        publisher.cancel()

    asyncio.run(run())

"""One pass over a topic, up to the end offsets it had when the pass began (no consumer group).

For readers of the compacted `policy` topic that need "the newest ... on it now" rather than a
subscription: `tamiyo train`'s final policy, `tamiyo promote`'s next version, and a (re)starting
learner continuing after what is already published.  What to keep is the caller's: each record value
is offered to a callback, one at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer

# A compacted topic's newest records are among its last: one publisher writes in version order.
TAIL_RECORDS = 16


class TopicMissing(LookupError):
    """The topic does not exist (or its metadata did not arrive in time)."""


class TopicPass:
    """A consumer (no group) on every partition of ``topic``, and the offsets each began and ended at on opening."""

    def __init__(self, settings: KafkaSettings, topic: str, client_id: str, metadata_timeout_s: float = 30.0) -> None:
        self.settings = settings.with_client_id(client_id)
        self.topic = topic
        self.metadata_timeout_s = metadata_timeout_s
        self.begin: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicPass:
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        self._consumer = consumer
        try:
            tps = await assign_from_beginning(consumer, self.topic, timeout_s=self.metadata_timeout_s)
            if not tps:
                raise TopicMissing(self.topic)
            self.begin = await consumer.beginning_offsets(tps)
            self.end = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def holds_more_than(self, records: int) -> bool:
        return any(self.end[tp] - self.begin[tp] > records for tp in self.end)

    async def read(self, offer: Callable[[bytes | None], None], last: int | None = None,
                   timeout_s: float = 60.0) -> bool:  # fmt: skip
        """Offer the value of every record of every partition (of the ``last`` ones if given), up to the end
        offsets taken on opening; True if all of them were read within ``timeout_s``."""
        consumer = self._consumer
        assert consumer is not None, "use `async with TopicPass(...)`"
        remaining: set[TopicPartition] = set()
        for tp, end in self.end.items():
            start = self.begin[tp] if last is None else max(self.begin[tp], end - last)
            if start < end:
                consumer.seek(tp, start)
                remaining.add(tp)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for rec in records:
                    if rec.offset < self.end[tp]:
                        offer(rec.value)
            for tp in list(remaining):
                if await consumer.position(tp) >= self.end[tp]:
                    remaining.discard(tp)
        return not remaining


async def read_tail_first(settings: KafkaSettings, topic: str, offer: Callable[[bytes | None], None],
                          found: Callable[[], bool], client_id: str, timeout_s: float = 60.0) -> bool:  # fmt: skip
    """Offer the last `TAIL_RECORDS` records of each partition, and the whole topic only if ``found()``
    is still False after them (a long run leaves thousands of not-yet-compacted records); each pass is
    bounded by ``timeout_s``.  False if a pass ran out of time (what was offered may then not be the
    newest); `TopicMissing` if the topic does not exist."""
    async with TopicPass(settings, topic, client_id) as reader:
        complete = await reader.read(offer, last=TAIL_RECORDS, timeout_s=timeout_s)
        if complete and not found() and reader.holds_more_than(TAIL_RECORDS):
            complete = await reader.read(offer, timeout_s=timeout_s)
    return complete

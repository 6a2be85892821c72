"""One pass over a run's policy topic, up to the end offsets it had when the pass began.

`tamiyo train` takes its final policy from it (`newest_verified_snapshot`: the newest snapshot its
`SnapshotVerifier` accepts), `tamiyo promote` the version to publish next (`newest_version`: the
newest of a policy id there).  What to keep is decided by `NewestVerified` and `NewestVersion`, which
are offered record values one at a time, in any order, and hold no Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb

if TYPE_CHECKING:  # tamiyo.policy imports torch: not at CLI start-up
    from tamiyo.policy.verification import SnapshotVerifier, VerifiedSnapshot

# The learner publishes in version order, so its newest snapshot is among the last records.
TAIL_RECORDS = 16


class PolicyTopicMissing(LookupError):
    """The policy topic does not exist (or its metadata did not arrive in time)."""


class NewestVerified:
    """The newest snapshot ``verifier`` accepts among the records offered; a later one wins a tie."""

    def __init__(self, verifier: SnapshotVerifier) -> None:
        self.verifier = verifier
        self.newest: VerifiedSnapshot | None = None

    def offer(self, value: bytes | None) -> None:
        try:
            snap = self.verifier.verify(value, newer_than=-1)
        except (LeylineError, ValueError, KeyError, TypeError):  # what SnapshotAcceptor counts as a bad snapshot
            return
        if snap is not None and (self.newest is None or snap.version >= self.newest.version):
            self.newest = snap


class NewestVersion:
    """The newest version of ``policy_id`` among the snapshots offered; -1 if none.

    Signed or not: a version number that is already on the topic is never handed out again."""

    def __init__(self, policy_id: str) -> None:
        self.policy_id = policy_id
        self.version = -1

    def offer(self, value: bytes | None) -> None:
        try:
            snap = decode_envelope(value, expect=pb.PolicySnapshot).payload  # a tombstone (None) fails here
        except LeylineError:
            return
        if snap.policy_id == self.policy_id:
            self.version = max(self.version, int(snap.version))


class PolicyTopicReader:
    """A consumer (no group) on every partition of ``topic``, and the offsets each began and ended at on opening."""

    def __init__(self, settings: KafkaSettings, topic: str, client_id: str, metadata_timeout_s: float = 30.0) -> None:
        self.settings = settings.with_client_id(client_id)
        self.topic = topic
        self.metadata_timeout_s = metadata_timeout_s
        self.begin: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> PolicyTopicReader:
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        self._consumer = consumer
        try:
            tps = await assign_from_beginning(consumer, self.topic, timeout_s=self.metadata_timeout_s)
            if not tps:
                raise PolicyTopicMissing(self.topic)
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
        assert consumer is not None, "use `async with PolicyTopicReader(...)`"
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


async def newest_verified_snapshot(settings: KafkaSettings, topic: str, verifier: SnapshotVerifier,
                                   client_id: str, timeout_s: float = 60.0) -> VerifiedSnapshot | None:  # fmt: skip
    """The newest snapshot on ``topic`` that ``verifier`` accepts; None if there is none (or no topic).

    The last `TAIL_RECORDS` records are read first (a long run leaves thousands of not-yet-compacted
    snapshots), the whole topic only if none of them verifies; each pass is bounded by ``timeout_s``."""
    chooser = NewestVerified(verifier)
    try:
        async with PolicyTopicReader(settings, topic, client_id) as reader:
            await reader.read(chooser.offer, last=TAIL_RECORDS, timeout_s=timeout_s)
            if chooser.newest is None and reader.holds_more_than(TAIL_RECORDS):
                await reader.read(chooser.offer, timeout_s=timeout_s)
    except PolicyTopicMissing:
        return None
    return chooser.newest


async def newest_version(settings: KafkaSettings, topic: str, policy_id: str, client_id: str,
                         metadata_timeout_s: float = 30.0, timeout_s: float = 300.0) -> int:  # fmt: skip
    """The newest version of ``policy_id`` on ``topic``; -1 if none.  Raises `PolicyTopicMissing`, and
    TimeoutError if the topic could not be read to its end within ``timeout_s``."""
    chooser = NewestVersion(policy_id)
    async with PolicyTopicReader(settings, topic, client_id, metadata_timeout_s) as reader:
        if not await reader.read(chooser.offer, timeout_s=timeout_s):
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g} s")
    return chooser.version

"""A run's policy topic, read once up to its current end (`bus/topic_pass.py`; the choosers are in
`policy/newest.py`).

`tamiyo train` takes its final policy from it (`newest_verified_snapshot`: the newest snapshot its
`SnapshotVerifier` accepts), `tamiyo promote` the version to publish next (`newest_version`: the
newest of a policy id there; `TopicMissing` without the topic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tamiyo.bus.clients import KafkaSettings
from tamiyo.bus.topic_pass import TopicMissing, TopicPass, read_tail_first

if TYPE_CHECKING:  # tamiyo.policy imports torch: not at CLI start-up
    from tamiyo.policy.verification import SnapshotVerifier, VerifiedSnapshot


async def newest_verified_snapshot(settings: KafkaSettings, topic: str, verifier: SnapshotVerifier,
                                   client_id: str, timeout_s: float = 60.0) -> VerifiedSnapshot | None:  # fmt: skip
    """The newest snapshot on ``topic`` that ``verifier`` accepts; None if there is none (or no topic)."""
    from tamiyo.policy.newest import NewestVerified

    chooser = NewestVerified(verifier)
    try:
        await read_tail_first(settings, topic, chooser.offer, lambda: chooser.newest is not None, client_id, timeout_s)
    except TopicMissing:
        return None
    return chooser.newest


async def newest_version(settings: KafkaSettings, topic: str, policy_id: str, client_id: str,
                         metadata_timeout_s: float = 30.0, timeout_s: float = 300.0) -> int:  # fmt: skip
    """The newest version of ``policy_id`` on ``topic``; -1 if none.  Raises `TopicMissing`, and
    TimeoutError if the topic could not be read to its end within ``timeout_s``."""
    from tamiyo.policy.newest import NewestVersion

    chooser = NewestVersion(policy_id)
    async with TopicPass(settings, topic, client_id, metadata_timeout_s) as reader:
        if not await reader.read(chooser.offer, timeout_s=timeout_s):
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s:g} s")
    return chooser.version

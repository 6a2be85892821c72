"""What is newest on a policy topic, decided one record value at a time (no Kafka: `bus/topic_pass.py`
reads the topic and offers each value; records may be offered in any order)."""

from __future__ import annotations

from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.policy.verification import SnapshotVerifier, VerifiedSnapshot


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


MAX_VERSION = 2**48  # a learner publishing one snapshot per millisecond takes ~9,000 years to get here


class NewestVersion:
    """The newest version of ``policy_id`` among the snapshots offered; -1 if none.

    Signed or not: a version number that is already on the topic is never handed out again.  Versions
    above `MAX_VERSION` are ignored: on a topic anyone may write, a forged 2**64 - 1 would otherwise make
    the next number overflow the wire's uint64 and a restarted learner crash-loop."""

    def __init__(self, policy_id: str) -> None:
        self.policy_id = policy_id
        self.version = -1

    def offer(self, value: bytes | None) -> None:
        try:
            snap = decode_envelope(value, expect=pb.PolicySnapshot).payload  # a tombstone (None) fails here
        except LeylineError:
            return
        if snap.policy_id == self.policy_id and int(snap.version) <= MAX_VERSION:
            self.version = max(self.version, int(snap.version))

"""Check a policy snapshot off the bus before anything parses its weights, then hot-swap it in.

`SnapshotVerifier.verify` is the one verification every reader of the policy topic uses (actors,
serving, `tamiyo train`'s final-policy fetch), in this order: envelope and payload type, size cap,
SHA-256 and signature (`contracts.signing.verify_snapshot`), policy id, a newer version, and a network
config whose graph schema is the reader's.  Only then may the weights be parsed (safetensors: no code
runs while parsing).

`SnapshotAcceptor` applies verified snapshots to a running `SwappablePolicy`: the same network gets
its weights copied in place, another network is built fresh; a snapshot that fails any check is
counted by reason and the acting policy stays as it was.  No Kafka here (`bus.follow` feeds it).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.graph import GraphSchema
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import TrustedKeys, verify_snapshot
from tamiyo.policy.model import ModelConfig
from tamiyo.policy.snapshot import network_from_snapshot, parse_snapshot_config, snapshot_tensors
from tamiyo.policy.swappable import SwappablePolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedSnapshot:
    """A snapshot whose integrity, signature, policy id and schema have been checked."""

    message: pb.PolicySnapshot
    schema: GraphSchema
    model_config: ModelConfig

    @property
    def version(self) -> int:
        return int(self.message.version)


class SnapshotVerifier:
    def __init__(self, trusted: TrustedKeys, policy_id: str, schema: GraphSchema | None) -> None:
        """``trusted``: the public keys snapshots may be signed with.  ``schema`` None accepts any graph
        schema (a reader that has no environment of its own)."""
        self.trusted = trusted
        self.policy_id = policy_id
        self.schema = schema

    def verify(self, value: bytes | None, newer_than: int = -1) -> VerifiedSnapshot | None:
        """The verified snapshot in record ``value``; None if it belongs to another policy id or is not newer
        than ``newer_than`` (not an error).  Raises `LeylineError` or ValueError when a check fails."""
        snap = decode_envelope(value, expect=pb.PolicySnapshot).payload
        verify_snapshot(snap, self.trusted)
        if snap.policy_id != self.policy_id:
            return None  # another policy on the same topic: not ours, not an error
        if int(snap.version) <= newer_than:
            return None
        schema, model_config, _ = parse_snapshot_config(snap.config_json)
        if self.schema is not None and schema != self.schema:
            raise InvalidFieldError("snapshot was trained for another graph schema")
        return VerifiedSnapshot(snap, schema, model_config)


@dataclass
class AcceptorStats:
    loaded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_version: int = -1


class SnapshotAcceptor:
    """Verify records of the policy topic and load the newer ones into ``policy``; see the module docstring."""

    def __init__(self, policy: SwappablePolicy, verifier: SnapshotVerifier, device: str = "cpu") -> None:
        self.policy = policy
        self.verifier = verifier
        self.device = device
        self.stats = AcceptorStats()

    def accept(self, value: bytes | None) -> bool:
        """Verify and load one record; True if the policy was swapped."""
        try:
            verified = self.verifier.verify(value, newer_than=self.policy.version)
            if verified is None:
                return False
            snap = verified.message
            current = self.policy.model
            if current is not None and current.schema == verified.schema and current.config == verified.model_config:
                # The same network: copy the weights in place instead of building it again.
                self.policy.load_weights(snapshot_tensors(snap.weights), verified.version)
            else:
                model, _ = network_from_snapshot(snap.weights, snap.config_json, self.device)
                self.policy.swap(model, verified.version)
        except (LeylineError, ValueError, KeyError, TypeError, RuntimeError) as err:
            reason = type(err).__name__
            self.stats.rejected[reason] += 1
            log.warning("rejected policy snapshot: %s: %s", reason, err)
            return False
        self.stats.loaded += 1
        self.stats.last_version = verified.version
        log.info("loaded policy %s version %d", self.verifier.policy_id, verified.version)
        return True

"""Follow the compacted `policy` topic and hot-swap verified snapshots into a running actor.

Reads from the beginning (compaction keeps the latest snapshot per policy id),
so a (re)started actor picks up the current policy at once.  Each snapshot is
checked before anything parses its weights: envelope and payload type, size
cap, SHA-256 and HMAC signature, policy id, a newer version, and a network
config whose graph schema matches the actor's environment.  A snapshot that
fails any check is logged with its reason and counted; the actor keeps the
policy it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.graph import GraphSchema
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import verify_snapshot
from tamiyo.learner.snapshot import load_snapshot, load_snapshot_weights, parse_snapshot_config
from tamiyo.producers.behaviour import SwappablePolicy

log = logging.getLogger(__name__)


@dataclass
class SubscriberStats:
    loaded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_version: int = -1


class PolicySubscriber:
    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        policy: SwappablePolicy,
        *,
        key: bytes,
        policy_id: str,
        schema: GraphSchema,
        device: str = "cpu",
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.policy = policy
        self.key = key
        self.policy_id = policy_id
        self.schema = schema
        self.device = device
        self.stats = SubscriberStats()

    def accept(self, value: bytes) -> bool:
        """Verify and load one record; True if the policy was swapped."""
        try:
            snap = decode_envelope(value, expect=pb.PolicySnapshot).payload
            verify_snapshot(snap, self.key)
            if snap.policy_id != self.policy_id:
                return False  # another policy on the same topic: not ours, not an error
            if int(snap.version) <= self.policy.version:
                return False
            schema, model_config, _ = parse_snapshot_config(snap.config_json)
            if schema != self.schema:
                raise InvalidFieldError("snapshot was trained for another graph schema")
            current = self.policy.model
            if current is not None and current.schema == schema and current.config == model_config:
                # The same network: copy the weights in place instead of building it again.
                self.policy.load_weights(load_snapshot_weights(snap.weights), int(snap.version))
            else:
                model, _ = load_snapshot(snap.weights, snap.config_json, self.device)
                self.policy.swap(model, int(snap.version))
        except (LeylineError, ValueError, KeyError, TypeError, RuntimeError) as err:
            reason = type(err).__name__
            self.stats.rejected[reason] += 1
            log.warning("rejected policy snapshot: %s: %s", reason, err)
            return False
        self.stats.loaded += 1
        self.stats.last_version = int(snap.version)
        log.info("loaded policy %s version %d", self.policy_id, snap.version)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings.with_client_id("tamiyo-policy-sub"), group_id=None)
        await consumer.start()
        try:
            if not await assign_from_beginning(consumer, self.topic, stop, timeout_s=float("inf")):
                return
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                # Only the newest record per partition matters; older ones are superseded.
                for records in batch.values():
                    for rec in reversed(records):
                        if await asyncio.to_thread(self.accept, rec.value):
                            break
        finally:
            await consumer.stop()

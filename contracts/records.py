"""`OutgoingRecord`: what a service's pure core asks its loop to publish (topic, key, encoded value)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    value: bytes  # an encoded EventEnvelope
    key: bytes | None = None
    # Telemetry: send without waiting and shrug off a broker error (the next packet supersedes it);
    # everything else is sent and acknowledged before the loop moves on.
    best_effort: bool = False

"""Topic names and their configurations for one run (prefix ``tamiyo.<run>.``)."""

from __future__ import annotations

from dataclasses import dataclass

# Logical topic -> Kafka topic config.  Batches carry up to B compressed
# trajectories, so they need a larger max.message.bytes than the 1 MiB default.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "trajectories": {"max.message.bytes": str(16 << 20), "retention.ms": str(24 * 3600 * 1000)},
    "batches": {"max.message.bytes": str(64 << 20), "retention.ms": str(3600 * 1000)},
    "priorities": {"max.message.bytes": str(4 << 20)},
    # Latest snapshot per policy id survives compaction; actors read it on (re)start.
    "policy": {
        "cleanup.policy": "compact",
        "max.message.bytes": str(64 << 20),
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": str(600 * 1000),
    },
    "telemetry": {"retention.ms": str(7 * 24 * 3600 * 1000)},
    "state": {},
    "commands": {},
    "deadletter": {"max.message.bytes": str(16 << 20), "retention.ms": str(7 * 24 * 3600 * 1000)},
}

LOGICAL_TOPICS: tuple[str, ...] = tuple(TOPIC_CONFIGS)


@dataclass(frozen=True)
class Topics:
    """The concrete topic names of a run."""

    prefix: str = "tamiyo."

    def name(self, logical: str) -> str:
        if logical not in TOPIC_CONFIGS:
            raise KeyError(f"unknown logical topic {logical!r}")
        return f"{self.prefix}{logical}"

    @property
    def trajectories(self) -> str:
        return self.name("trajectories")

    @property
    def batches(self) -> str:
        return self.name("batches")

    @property
    def priorities(self) -> str:
        return self.name("priorities")

    @property
    def policy(self) -> str:
        return self.name("policy")

    @property
    def telemetry(self) -> str:
        return self.name("telemetry")

    @property
    def state(self) -> str:
        return self.name("state")

    @property
    def commands(self) -> str:
        return self.name("commands")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    def all(self) -> dict[str, str]:
        return {logical: self.name(logical) for logical in LOGICAL_TOPICS}

    @staticmethod
    def for_run(run: str) -> Topics:
        return Topics(prefix=f"tamiyo.{run}." if run else "tamiyo.")

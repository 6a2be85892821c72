"""The replay consumer's settings and counters (light: `tamiyo replay --help` imports this, not the core)."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("prioritized", "fifo")


@dataclass
class ReplayConfig:
    mode: str = "prioritized"
    capacity: int = 100_000
    max_bytes: int = 1 << 30
    batch_size: int = 32  # trajectories per SampledBatch
    alpha: float = 0.6
    beta_start: float = 0.4
    beta_end: float = 1.0
    beta_steps: int = 10_000  # batches over which beta anneals
    min_size: int | None = None  # items before the first sample (default: batch_size)
    # Replay ratio: how often each trajectory is sampled on average (None: no limit but the minimum size).
    samples_per_insert: float | None = None
    samples_per_insert_tolerance: float = 256.0
    max_in_flight: int = 2  # batches published and not yet acknowledged by the learner
    ack_timeout_s: float = 120.0  # an unacknowledged batch stops counting after this long
    max_policy_lag: int = 4  # fifo: items older than this many policy versions are dropped
    # prioritized: items made by a policy more than this many versions behind the learner are never sampled
    # again (V-trace truncates their importance weights, so they would cost learner time and teach little);
    # None: no cap.  At the default 100k capacity a buffer otherwise serves unrolls of any age.
    max_staleness: int | None = 1000
    snapshot_path: str | None = None
    snapshot_every_s: float = 10.0
    telemetry_every_s: float = 5.0
    replay_id: str = "replay-0"
    run_id: str = ""
    group_id: str | None = None
    max_seconds: float | None = None
    seed: int = 0
    # The run's env (`contracts/env_schemas.env_schema`): every trajectory is checked against its graph
    # schema at ingest, so a bad one is dead-lettered here rather than poisoning the learner's batches.
    # None: trajectories are checked as Leyline messages only.
    env: str | None = None


@dataclass
class ReplayStats:
    consumed: int = 0
    inserted: int = 0
    duplicates: int = 0
    batches_published: int = 0
    acks: int = 0
    priority_updates_applied: int = 0
    rejected_by_learner: int = 0  # items an ack named as unusable (prioritized: evicted, if still stored)
    stale_acks: int = 0
    snapshots: int = 0

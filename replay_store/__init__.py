"""tamiyo.replay_store: the pure data structures behind the replay consumer (no Kafka here).

- ``PrioritizedReplay`` (prioritized.py): sum-tree prioritized replay over compressed
  trajectory payloads; ``sample`` returns indices + generation keys to hand back
  with ``update_priorities`` (stale updates are dropped).
- ``TrajectoryStorage`` (storage.py): the ring of payloads + metadata, count and byte
  budgets, FIFO eviction, ``(producer id, sequence)`` dedup.
- ``OnPolicyFifo`` (fifo.py): PPO mode, exactly once in order, policy-lag drops.
- ``RateLimiter`` (rate_limiter.py): Reverb-style samples-per-insert control.
- ``save_replay_snapshot`` / ``load_replay_snapshot`` (snapshot.py): atomic, pickle-free snapshots.
- ``LinearBetaSchedule`` (schedules.py), ``PayloadCompressor`` (compression.py).

The replay service composes them, e.g. per loop: ``limiter.can_insert(n)`` before
consuming more records, ``replay.add(...)`` then ``limiter.record_insert(n)``;
``limiter.can_sample(B)`` before ``replay.sample(B, beta=schedule(step))`` then
``limiter.record_sample(B)``.
"""

from tamiyo.replay_store.compression import PayloadCompressor, train_dictionary
from tamiyo.replay_store.fifo import FifoBatch, OnPolicyFifo
from tamiyo.replay_store.prioritized import PrioritizedReplay, Sample
from tamiyo.replay_store.rate_limiter import RateLimiter
from tamiyo.replay_store.schedules import LinearBetaSchedule
from tamiyo.replay_store.snapshot import load_replay_snapshot, save_replay_snapshot
from tamiyo.replay_store.storage import ItemMeta, PutResult, TrajectoryStorage
from tamiyo.replay_store.sum_tree import SumMinTree

__all__ = [
    "FifoBatch",
    "ItemMeta",
    "LinearBetaSchedule",
    "OnPolicyFifo",
    "PayloadCompressor",
    "PrioritizedReplay",
    "PutResult",
    "RateLimiter",
    "Sample",
    "SumMinTree",
    "TrajectoryStorage",
    "load_replay_snapshot",
    "save_replay_snapshot",
    "train_dictionary",
]

"""On-policy FIFO for PPO: each item delivered exactly once, in arrival order.

Items whose behaviour policy is more than ``max_policy_lag`` versions behind the
learner's current policy are dropped (and counted) when they reach the head
instead of being delivered: PPO's clipped objective assumes near-on-policy data.
When the learner falls behind and the queue is full, the oldest items are
evicted and counted as overflow; call ``can_insert`` first to apply back-pressure
instead.

Duplicates (at-least-once delivery upstream) are ignored twice over: a
``(producer id, sequence)`` still queued is dropped by the storage, and one at or
below the highest sequence already taken from that producer is dropped here, so
a redelivery after the item went to the learner cannot be delivered again.  This
assumes each producer's sequences arrive in increasing order, as they do on one
Kafka partition keyed by producer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tamiyo.replay_store.storage import ItemMeta, TrajectoryStorage


@dataclass(frozen=True)
class FifoBatch:
    payloads: list[bytes]
    producer_ids: list[str]
    sequences: np.ndarray  # int64, -1 when the item had no dedup key
    policy_versions: np.ndarray  # int64
    lengths: np.ndarray  # int32
    encodings: np.ndarray  # int8 Leyline ContentEncoding (0: unspecified)
    raw_sizes: np.ndarray  # int64 decoded size (0: unknown)
    item_ids: np.ndarray  # int64, increasing: arrival order

    def __len__(self) -> int:
        return len(self.payloads)


class OnPolicyFifo:
    def __init__(
        self,
        capacity: int,
        max_policy_lag: int,
        *,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_policy_lag < 0:
            raise ValueError(f"max_policy_lag must be >= 0, got {max_policy_lag}")
        self.max_policy_lag = int(max_policy_lag)
        self.storage = TrajectoryStorage(capacity, max_bytes=max_bytes, clock=clock)
        self.delivered_total = 0
        self.dropped_stale_total = 0
        self.redelivered_total = 0
        self._taken_up_to: dict[str, int] = {}  # producer id -> highest sequence taken (delivered or dropped)
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def dropped_overflow_total(self) -> int:
        return self.storage.evicted_total

    def can_insert(self, count: int = 1) -> bool:
        """False when ``count`` more items would evict undelivered ones (by count)."""
        with self.lock:
            return len(self.storage) + count <= self.storage.capacity

    def put(self, payloads: Sequence[bytes], meta: ItemMeta | None = None) -> np.ndarray:
        """Queue ``payloads``; returns each one's slot (``-1``: duplicate or oversized)."""
        slots = np.full(len(payloads), -1, dtype=np.int64)
        with self.lock:
            keep = self._not_taken_yet(meta, len(payloads))
            if keep is None:
                return self.storage.put(payloads, meta).slots
            self.redelivered_total += int(keep.size - keep.sum())
            kept = np.flatnonzero(keep)
            if kept.size:
                chosen = np.empty(len(payloads), dtype=object)
                chosen[:] = list(payloads)
                slots[kept] = self.storage.put(chosen[kept].tolist(), _subset(meta, kept)).slots
            return slots

    def take(self, max_items: int, current_policy_version: int) -> FifoBatch:
        """Pop up to ``max_items`` fresh items, oldest first; stale ones met on the way are dropped."""
        if max_items < 0:
            raise ValueError("max_items must be >= 0")
        with self.lock:
            st = self.storage
            order = st.slots_in_order()
            fresh = current_policy_version - st.policy_versions[order] <= self.max_policy_lag
            fresh_count = np.cumsum(fresh)
            # Consume the shortest prefix holding max_items fresh items (or everything).
            cut = int(np.searchsorted(fresh_count, max_items, side="left")) + 1 if max_items else 0
            cut = min(cut, order.size)
            prefix = order[:cut]
            delivered = prefix[fresh[:cut]]
            batch = FifoBatch(
                payloads=st.payloads[delivered].tolist(),
                producer_ids=st.producer_ids_of(delivered),
                sequences=st.sequences[delivered].copy(),
                policy_versions=st.policy_versions[delivered].copy(),
                lengths=st.lengths[delivered].copy(),
                encodings=st.encodings[delivered].copy(),
                raw_sizes=st.raw_sizes[delivered].copy(),
                item_ids=st.item_ids[delivered].copy(),
            )
            self._remember_taken(prefix)
            st.pop_oldest(cut)
            self.delivered_total += delivered.size
            self.dropped_stale_total += cut - delivered.size
            return batch

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "size": len(self.storage),
                "bytes": self.storage.total_bytes,
                "delivered_total": self.delivered_total,
                "dropped_stale_total": self.dropped_stale_total,
                "dropped_overflow_total": self.storage.evicted_total,
                "redelivered_total": self.redelivered_total,
                "duplicates_total": self.storage.duplicates_total,
                "oversized_total": self.storage.oversized_total,
            }

    # --------------------------------------------------------------- helpers
    def _not_taken_yet(self, meta: ItemMeta | None, n: int) -> np.ndarray | None:
        """Mask of items not already taken, or None when the batch carries no dedup keys."""
        if meta is None or meta.producer_ids is None or meta.sequences is None or not self._taken_up_to:
            return None
        producers = np.asarray(meta.producer_ids, dtype=str).reshape(n)
        sequences = np.asarray(meta.sequences, dtype=np.int64).reshape(n)
        unique, inverse = np.unique(producers, return_inverse=True)
        marks = np.array([self._taken_up_to.get(str(p), -1) for p in unique], dtype=np.int64)
        return sequences > marks[inverse.ravel()]

    def _remember_taken(self, slots: np.ndarray) -> None:
        st = self.storage
        codes = st.producer_codes[slots]
        keyed = codes >= 0
        if not keyed.any():
            return
        codes, sequences = codes[keyed], st.sequences[slots][keyed]
        unique = np.unique(codes)
        highest = np.full(unique.size, -1, dtype=np.int64)
        np.maximum.at(highest, np.searchsorted(unique, codes), sequences)
        for code, seq in zip(unique.tolist(), highest.tolist(), strict=True):  # one entry per producer
            producer = st.producer_table[code]
            self._taken_up_to[producer] = max(self._taken_up_to.get(producer, -1), seq)


def _subset(meta: ItemMeta | None, kept: np.ndarray) -> ItemMeta | None:
    if meta is None:
        return None

    def pick(column: Sequence[int] | Sequence[str] | np.ndarray | None) -> np.ndarray | None:
        if column is None:
            return None
        arr = np.asarray(column)
        return arr if arr.ndim == 0 else arr[kept]

    return ItemMeta(
        producer_ids=pick(meta.producer_ids),
        sequences=pick(meta.sequences),
        policy_versions=pick(meta.policy_versions),
        lengths=pick(meta.lengths),
        encodings=pick(meta.encodings),
        raw_sizes=pick(meta.raw_sizes),
    )

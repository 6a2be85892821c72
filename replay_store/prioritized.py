"""Prioritized experience replay (Schaul et al. 2016) over compressed trajectories.

``P(i) = p_i^α / Σ_k p_k^α`` with ``p_i = |priority_i| + eps``; sampling is
stratified (one draw per equal slice of the total mass) on a sum-tree, and
importance weights ``(N·P(i))^-β`` are normalised by the largest possible weight
(taken from the min-tree), so every weight is ≤ 1.

Slots are reused, so an index alone does not name an item: every insertion gets a
fresh *key* (a generation number, never reused; Leyline's ``SampledItem.key`` and
``PriorityUpdate.keys``).  Pass the ``keys`` of a ``Sample`` back with the priority
update and updates for items evicted in the meantime are dropped (and counted)
instead of landing on the newer item in that slot.  (``add``'s ``keys`` are the
other kind of key: ``(producer id, sequence)`` for dedup.)

Items the learner could not use (``evict``, from ``PriorityUpdate.rejected_keys``) get priority 0 for
good, like retired ones, until their slot is refilled.

A staleness cap (``retire_older_than``): an item whose behaviour policy is older than a given version
gets priority 0, so it is never sampled again, and priority updates cannot bring it back; the oldest
slots are freed at once when they are retired, the others when the ring reaches them.  Unrolls arrive
roughly in the order they were made, so the retired items are almost always a prefix of the ring.

One writer and one sampler may call from different threads: every public method
holds one lock, and none of them does per-item Python work while holding it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tamiyo.replay_store.storage import EMPTY, ItemMeta, TrajectoryStorage
from tamiyo.replay_store.sum_tree import SumMinTree


@dataclass(frozen=True)
class Sample:
    indices: np.ndarray  # int64 [B] slots
    keys: np.ndarray  # int64 [B] generation of each slot's item: hand back with update_priorities
    payloads: list[bytes]
    weights: np.ndarray  # float32 [B], (N·P(i))^-β / max_j (N·P(j))^-β, so in (0, 1]
    probabilities: np.ndarray  # float64 [B], P(i)
    policy_versions: np.ndarray  # int64 [B] behaviour policy version of each item
    lengths: np.ndarray  # int32 [B] steps per trajectory
    encodings: np.ndarray  # int8 [B] Leyline ContentEncoding of each payload (0: unspecified)
    raw_sizes: np.ndarray  # int64 [B] decoded payload size (0: unknown)


class PrioritizedReplay:
    def __init__(
        self,
        capacity: int,
        alpha: float = 0.6,
        eps: float = 1e-6,
        *,
        max_bytes: int | None = None,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.storage = TrajectoryStorage(capacity, max_bytes=max_bytes, clock=clock)
        self.tree = SumMinTree(capacity)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.max_priority = 1.0  # raw priority given to new items without one (running max, as in PER)
        self.stale_updates = 0
        self.min_policy_version = 0  # items made by an older policy are retired (never sampled)
        self.retired_total = 0
        self.rejected = np.zeros(self.storage.capacity, dtype=bool)  # evicted at the learner's word
        self.rejected_total = 0
        self.lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self.storage.capacity

    def __len__(self) -> int:
        return len(self.storage)

    # ----------------------------------------------------------------- writes
    def add(
        self,
        payloads: Sequence[bytes],
        priorities: np.ndarray | Sequence[float] | None = None,
        keys: Sequence[tuple[str, int]] | None = None,
        *,
        meta: ItemMeta | None = None,
    ) -> np.ndarray:
        """Store ``payloads``; returns the slot of each one (``-1``: duplicate or oversized, not stored).

        ``keys`` are ``(producer id, sequence)`` dedup keys, one per payload (or pass
        them, with policy versions and lengths, as ``meta``).  Without ``priorities``
        new items get the largest priority seen so far, so each is sampled soon.
        """
        n = len(payloads)
        if keys is not None:
            if meta is not None:
                raise ValueError("give dedup keys either as keys or in meta, not both")
            producers, sequences = zip(*keys, strict=True) if n else ((), ())
            meta = ItemMeta(producer_ids=list(producers), sequences=list(sequences))
        # Validate before touching the storage: a bad priority must not leave an item stored but unsampleable.
        raw, given_leaves = (None, None) if priorities is None else self._validated(priorities, n)
        with self.lock:
            put = self.storage.put(payloads, meta)
            stored = put.slots >= 0
            new_slots = put.slots[stored]
            self.rejected[new_slots] = False  # a refilled slot holds a new item
            if raw is None or given_leaves is None:
                leaf_values = np.full(new_slots.size, float(self._leaf_value(np.array(self.max_priority))))
            else:
                leaf_values = given_leaves[stored]
                if new_slots.size:
                    self.max_priority = max(self.max_priority, float(raw[stored].max()))
            too_old = self.storage.policy_versions[new_slots] < self.min_policy_version
            if too_old.any():  # made by a retired policy: stored (its key is seen), never sampled
                leaf_values = np.where(too_old, 0.0, leaf_values)
                self.retired_total += int(too_old.sum())
            # Evicted slots not refilled by this put must stop being sampled.
            vacated = put.vacated_slots
            if vacated.size:
                new_slots = np.concatenate([vacated, new_slots])
                leaf_values = np.concatenate([np.zeros(vacated.size), leaf_values])
            self.tree.set_unchecked(new_slots, leaf_values)  # storage slots, validated leaves
            return put.slots

    def update_priorities(
        self,
        indices: np.ndarray | Sequence[int],
        priorities: np.ndarray | Sequence[float],
        keys: np.ndarray | Sequence[int] | None = None,
    ) -> int:
        """Set new priorities; returns how many were applied.

        With ``keys`` (from the ``Sample``), an update whose slot now holds another
        item is dropped and counted in ``stale_updates``.  Updates to empty slots are
        always dropped.  On a repeated index the last update wins.
        """
        idx = np.asarray(indices, dtype=np.int64).ravel()
        raw, leaves = self._validated(priorities, idx.size)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError("priority update index out of range")
        with self.lock:
            current = self.storage.item_ids[idx]
            live = current != EMPTY
            if keys is not None:
                ids = np.asarray(keys, dtype=np.int64).ravel()
                if ids.shape != idx.shape:
                    raise ValueError("keys must match indices")
                live &= current == ids
            live &= self.storage.policy_versions[idx] >= self.min_policy_version  # retired stays retired
            live &= ~self.rejected[idx]  # and evicted stays evicted
            applied = int(live.sum())
            self.stale_updates += idx.size - applied
            if applied:
                self.tree.set_unchecked(idx[live], leaves[live])  # range-checked, validated leaves
                self.max_priority = max(self.max_priority, float(raw[live].max()))
            return applied

    def evict(self, indices: np.ndarray | Sequence[int], keys: np.ndarray | Sequence[int]) -> int:
        """Never sample the items at ``indices`` again, where the slot still holds the item of that key (a
        refilled slot keeps its new item); returns how many were evicted now."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        ids = np.asarray(keys, dtype=np.int64).ravel()
        if ids.shape != idx.shape:
            raise ValueError("keys must match indices")
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError("evicted index out of range")
        with self.lock:
            current = self.storage.item_ids[idx]
            hit = np.unique(idx[(current != EMPTY) & (current == ids) & ~self.rejected[idx]])
            if hit.size:
                self.rejected[hit] = True
                self.tree.set_unchecked(hit, np.zeros(hit.size))
                self.rejected_total += int(hit.size)
            return int(hit.size)

    def retire_older_than(self, min_policy_version: int) -> int:
        """Never sample items whose behaviour policy version is below ``min_policy_version`` again, and free
        the retired prefix of the ring; returns how many were retired now.  The bound only rises."""
        with self.lock:
            st = self.storage
            retired = 0
            if min_policy_version > self.min_policy_version:
                self.min_policy_version = int(min_policy_version)
                order = st.slots_in_order()
                stale = order[(st.policy_versions[order] < self.min_policy_version) & (self.tree.get(order) > 0)]
                if stale.size:
                    self.tree.set_unchecked(stale, np.zeros(stale.size))
                    retired = int(stale.size)
                    self.retired_total += retired
            if st.size and st.policy_versions[st.head] < self.min_policy_version:  # O(1) when nothing to free
                order = st.slots_in_order()
                old = st.policy_versions[order] < self.min_policy_version
                st.pop_oldest(old.size if old.all() else int(np.argmin(old)))  # leaves already 0
            return retired

    def live_count(self) -> int:
        """Items that can still be sampled (stored, not retired, not evicted)."""
        with self.lock:
            st = self.storage
            order = st.slots_in_order()
            return int(((st.policy_versions[order] >= self.min_policy_version) & ~self.rejected[order]).sum())

    # ------------------------------------------------------------------ reads
    def sample(self, batch_size: int, beta: float = 0.4) -> Sample:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        with self.lock:
            if len(self.storage) == 0 or self.tree.total <= 0:
                raise ValueError("cannot sample from an empty replay (or one whose items are all retired)")
            idx = self.tree.sample_stratified(batch_size, self.rng)
            total = self.tree.total
            leaf = self.tree.get(idx)
            probabilities = leaf / total
            # (N·P(i))^-β / (N·P_min)^-β = (p_i / p_min)^-β: N and the total cancel.
            weights = (leaf / self.tree.min) ** (-beta)
            st = self.storage
            return Sample(
                indices=idx,
                keys=st.item_ids[idx],
                payloads=st.payloads[idx].tolist(),
                weights=weights.astype(np.float32),
                probabilities=probabilities,
                policy_versions=st.policy_versions[idx],
                lengths=st.lengths[idx],
                encodings=st.encodings[idx],
                raw_sizes=st.raw_sizes[idx],
            )

    def stats(self) -> dict[str, float]:
        with self.lock:
            st = self.storage
            return {
                "size": len(st),
                "bytes": st.total_bytes,
                "evicted_total": st.evicted_total,
                "duplicates_total": st.duplicates_total,
                "oversized_total": st.oversized_total,
                "stale_updates": self.stale_updates,
                "retired_total": self.retired_total,
                "rejected_total": self.rejected_total,
                "min_policy_version": self.min_policy_version,
                "priority_total": self.tree.total,
                "max_priority": self.max_priority,
            }

    # --------------------------------------------------------------- helpers
    def _leaf_value(self, raw: np.ndarray) -> np.ndarray:
        return (np.abs(raw) + self.eps) ** self.alpha

    def _validated(self, priorities: np.ndarray | Sequence[float], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(|priorities|, their tree leaf values); raises unless both are finite."""
        raw = np.abs(np.asarray(priorities, dtype=np.float64).ravel())
        if raw.shape != (n,):
            raise ValueError(f"expected {n} priorities, got {raw.shape}")
        leaves = self._leaf_value(raw)
        # One NaN or inf would poison every sum above it; a huge finite one can overflow p^alpha.
        if n and not np.isfinite(leaves.max()):
            raise ValueError("priorities must be finite (and p^alpha too)")
        return raw, leaves

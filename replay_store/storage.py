"""Compressed trajectory storage: a ring of opaque payloads plus columnar metadata.

Items are compressed ``Trajectory`` payloads (bytes the store never looks into)
with their metadata: producer id, sequence number, behaviour policy version,
length (steps), insert time, stored size, and the content encoding and decoded
size the replay service needs to describe the payload downstream.  Capacity binds by count **and** by a byte
budget, whichever comes first; the oldest items go first (FIFO).  A duplicate
``(producer id, sequence)`` of an item still stored is ignored, because delivery
upstream is at-least-once.

Not thread-safe on its own: the buffers that own a storage hold the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

EMPTY = -1
# A dedup key packs (producer code, sequence) into one int64 so membership tests are C-level set ops.
_SEQUENCE_BITS = 40
MAX_SEQUENCE = (1 << _SEQUENCE_BITS) - 1
MAX_PRODUCERS = 1 << (63 - _SEQUENCE_BITS)


@dataclass(frozen=True)
class ItemMeta:
    """Columnar metadata for a batch of items (each column has one entry per payload).

    ``producer_ids``/``sequences`` together are the dedup key; leave them None to
    store items without dedup.
    """

    producer_ids: Sequence[str] | np.ndarray | None = None
    sequences: Sequence[int] | np.ndarray | None = None
    policy_versions: Sequence[int] | np.ndarray | None = None
    lengths: Sequence[int] | np.ndarray | None = None
    # How to read the payload, for the SampledItem the replay service builds: a Leyline
    # ContentEncoding value (0 = unspecified) and the decoded size (0 = unknown).
    encodings: Sequence[int] | np.ndarray | None = None
    raw_sizes: Sequence[int] | np.ndarray | None = None


@dataclass(frozen=True)
class PutResult:
    """Where each offered item went and which stored items were evicted to make room."""

    slots: np.ndarray  # int64 [n_offered]: slot per offered item, EMPTY when not stored
    evicted_slots: np.ndarray  # int64: slots whose previous item was evicted (some refilled by this put)
    vacated_slots: np.ndarray  # int64: evicted slots left empty after this put
    duplicates: int
    oversized: int

    @property
    def stored_slots(self) -> np.ndarray:
        return self.slots[self.slots >= 0]


class TrajectoryStorage:
    def __init__(
        self,
        capacity: int,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.capacity = int(capacity)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        cap = self.capacity
        self.payloads = np.empty(cap, dtype=object)
        self.nbytes = np.zeros(cap, dtype=np.int64)
        self.item_ids = np.full(cap, EMPTY, dtype=np.int64)  # generation: unique per insertion, ever
        self.producer_codes = np.full(cap, EMPTY, dtype=np.int32)
        self.sequences = np.full(cap, EMPTY, dtype=np.int64)
        self.policy_versions = np.zeros(cap, dtype=np.int64)
        self.lengths = np.zeros(cap, dtype=np.int32)
        self.insert_times = np.zeros(cap, dtype=np.float64)
        self.encodings = np.zeros(cap, dtype=np.int8)
        self.raw_sizes = np.zeros(cap, dtype=np.int64)
        self.producer_table: list[str] = []
        self._producer_codes: dict[str, int] = {}
        self._dedup: set[int] = set()
        self.head = 0  # slot of the oldest item
        self.size = 0
        self.total_bytes = 0
        self.next_item_id = 0
        self.evicted_total = 0
        self.duplicates_total = 0
        self.oversized_total = 0

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return self.size

    @property
    def tail(self) -> int:
        return (self.head + self.size) % self.capacity

    def slots_in_order(self) -> np.ndarray:
        """Occupied slots, oldest first."""
        return (self.head + np.arange(self.size, dtype=np.int64)) % self.capacity

    def producer_ids_of(self, slots: np.ndarray) -> list[str]:
        table = np.asarray([*self.producer_table, ""], dtype=object)  # code -1 -> ""
        return table[self.producer_codes[slots]].tolist()

    # ----------------------------------------------------------------- writes
    def put(self, payloads: Sequence[bytes], meta: ItemMeta | None = None) -> PutResult:
        n = len(payloads)
        meta = meta or ItemMeta()
        slots = np.full(n, EMPTY, dtype=np.int64)
        if n == 0:
            nothing = np.zeros(0, np.int64)
            return PutResult(slots, nothing, nothing, 0, 0)
        payload_arr = np.empty(n, dtype=object)
        payload_arr[:] = list(payloads)
        sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        versions = _column(meta.policy_versions, n, np.int64, 0)
        lengths = _column(meta.lengths, n, np.int32, 0)
        encodings = _column(meta.encodings, n, np.int8, 0)
        raw_sizes = _column(meta.raw_sizes, n, np.int64, 0)
        codes, seqs, keys = self._dedup_keys(meta, n)

        keep = np.ones(n, dtype=bool)
        duplicates = 0
        if keys is not None:
            keep, duplicates = self._unseen(keys)
        oversized_mask = keep & (sizes > self.max_bytes) if self.max_bytes is not None else None
        oversized = int(oversized_mask.sum()) if oversized_mask is not None else 0
        if oversized_mask is not None and oversized:
            keep &= ~oversized_mask
        offered = np.flatnonzero(keep)

        # Age order is [stored items oldest first..., offered items in order]; evict the
        # shortest prefix of it that brings count and bytes within budget.
        evict = self._eviction_count(sizes[offered])
        evict_stored = min(evict, self.size)
        # New items that would be evicted at once never land (counted as evicted, slot -1).
        offered = offered[evict - evict_stored :]
        self.evicted_total += evict - evict_stored
        evicted_slots = self._drop_oldest(evict_stored)

        m = offered.size
        start = self.tail
        new_slots = (start + np.arange(m, dtype=np.int64)) % self.capacity
        # New items fill the ring range [start, start + m); evicted slots outside it stay empty.
        vacated_slots = evicted_slots[(evicted_slots - start) % self.capacity >= m]
        self.payloads[new_slots] = payload_arr[offered]
        self.nbytes[new_slots] = sizes[offered]
        self.item_ids[new_slots] = self.next_item_id + np.arange(m, dtype=np.int64)
        self.producer_codes[new_slots] = codes[offered]
        self.sequences[new_slots] = seqs[offered]
        self.policy_versions[new_slots] = versions[offered]
        self.lengths[new_slots] = lengths[offered]
        self.encodings[new_slots] = encodings[offered]
        self.raw_sizes[new_slots] = raw_sizes[offered]
        self.insert_times[new_slots] = self._clock()
        if keys is not None:
            self._dedup.update(keys[offered].tolist())
        self.next_item_id += m
        self.size += m
        self.total_bytes += int(sizes[offered].sum())
        slots[offered] = new_slots
        self.duplicates_total += duplicates
        self.oversized_total += oversized
        return PutResult(slots, evicted_slots, vacated_slots, duplicates, oversized)

    def pop_oldest(self, count: int) -> np.ndarray:
        """Remove the ``count`` oldest items; returns their (now empty) slots.  Read before popping."""
        return self._drop_oldest(min(int(count), self.size), evicted=False)

    # --------------------------------------------------------------- helpers
    def _dedup_keys(self, meta: ItemMeta, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if meta.producer_ids is None and meta.sequences is None:
            empty = np.full(n, EMPTY, dtype=np.int64)
            return empty.astype(np.int32), empty, None
        if meta.producer_ids is None or meta.sequences is None:
            raise ValueError("dedup needs both producer_ids and sequences")
        seqs = _column(meta.sequences, n, np.int64, 0)
        if seqs.min() < 0 or seqs.max() > MAX_SEQUENCE:
            raise ValueError(f"sequence numbers must lie in [0, {MAX_SEQUENCE}]")
        producers = meta.producer_ids
        producers = producers.tolist() if isinstance(producers, np.ndarray) else list(producers)
        if len(producers) != n:
            raise ValueError(f"producer_ids: expected {n} entries, got {len(producers)}")
        # Dict lookups through map() run in C; only a batch with a first-seen producer
        # takes the slow path, once per distinct new producer.
        lookup = self._producer_codes.get
        found = list(map(lookup, producers))
        if None in found:
            for producer in dict.fromkeys(producers):
                self._producer_code(str(producer))
            found = list(map(lookup, producers))
            if None in found:
                raise ValueError("producer ids must be strings")
        codes = np.array(found, dtype=np.int32)
        keys = (codes.astype(np.int64) << _SEQUENCE_BITS) | seqs
        return codes, seqs, keys

    def _producer_code(self, producer_id: str) -> int:
        code = self._producer_codes.get(producer_id)
        if code is None:
            if len(self.producer_table) >= MAX_PRODUCERS:
                raise ValueError("too many distinct producers")
            code = len(self.producer_table)
            self._producer_codes[producer_id] = code
            self.producer_table.append(producer_id)
        return code

    def _unseen(self, keys: np.ndarray) -> tuple[np.ndarray, int]:
        """Mask of keys neither stored nor repeated earlier in the batch, and how many were dropped."""
        keep = np.ones(keys.size, dtype=bool)
        ordered = np.sort(keys)
        if (ordered[1:] == ordered[:-1]).any():  # repeats within the batch: keep first occurrences
            keep[:] = False
            keep[np.unique(keys, return_index=True)[1]] = True
        key_list = keys.tolist()
        if not self._dedup.isdisjoint(key_list):
            seen = np.fromiter(self._dedup.intersection(key_list), dtype=np.int64)
            keep &= ~np.isin(keys, seen)
        return keep, int(keys.size - keep.sum())

    def _eviction_count(self, new_sizes: np.ndarray) -> int:
        """Shortest prefix (in age order: stored, then new) to evict so that count and bytes fit."""
        m = new_sizes.size
        evict = max(0, self.size + m - self.capacity)
        if self.max_bytes is None:
            return evict
        overflow = self.total_bytes + int(new_sizes.sum()) - self.max_bytes
        if overflow <= 0:
            return evict
        # Bytes of the age-ordered prefix, grown in chunks so a typical put touches a few slots only.
        chunk = max(evict, 16)
        while True:
            stored_part = min(chunk, self.size)
            order = (self.head + np.arange(stored_part, dtype=np.int64)) % self.capacity
            prefix = self.nbytes[order]
            if chunk > self.size:
                prefix = np.concatenate([prefix, new_sizes[: chunk - self.size]])
            cumulative = np.cumsum(prefix)
            need = int(np.searchsorted(cumulative, overflow, side="left")) + 1
            if need <= prefix.size or prefix.size == self.size + m:
                return max(evict, min(need, self.size + m))
            chunk *= 4

    def _drop_oldest(self, count: int, evicted: bool = True) -> np.ndarray:
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        slots = (self.head + np.arange(count, dtype=np.int64)) % self.capacity
        keys = self._keys_of(slots)
        if keys.size:
            self._dedup.difference_update(keys.tolist())
        self.total_bytes -= int(self.nbytes[slots].sum())
        self.payloads[slots] = None
        self.nbytes[slots] = 0
        self.item_ids[slots] = EMPTY
        self.producer_codes[slots] = EMPTY
        self.sequences[slots] = EMPTY
        self.head = (self.head + count) % self.capacity
        self.size -= count
        if evicted:
            self.evicted_total += count
        return slots

    def _keys_of(self, slots: np.ndarray) -> np.ndarray:
        codes = self.producer_codes[slots].astype(np.int64)
        seqs = self.sequences[slots]
        has_key = codes >= 0
        return (codes[has_key] << _SEQUENCE_BITS) | seqs[has_key]

    # ------------------------------------------------------------ snapshot
    def restore_state(
        self,
        *,
        head: int,
        payloads: list[bytes],
        item_ids: np.ndarray,
        producer_codes: np.ndarray,
        sequences: np.ndarray,
        policy_versions: np.ndarray,
        lengths: np.ndarray,
        insert_times: np.ndarray,
        encodings: np.ndarray,
        raw_sizes: np.ndarray,
        producer_table: list[str],
        next_item_id: int,
        counters: dict[str, int],
    ) -> None:
        """Load items (given oldest first) into the same slots they occupied; used by snapshot restore."""
        n = len(payloads)
        if n > self.capacity:
            raise ValueError("snapshot holds more items than the capacity")
        self._reset()
        self.head = int(head) % self.capacity
        slots = (self.head + np.arange(n, dtype=np.int64)) % self.capacity
        self.payloads[slots] = _object_array(payloads)
        self.nbytes[slots] = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        self.item_ids[slots] = item_ids
        self.producer_codes[slots] = producer_codes
        self.sequences[slots] = sequences
        self.policy_versions[slots] = policy_versions
        self.lengths[slots] = lengths
        self.insert_times[slots] = insert_times
        self.encodings[slots] = encodings
        self.raw_sizes[slots] = raw_sizes
        self.producer_table = list(producer_table)
        self._producer_codes = {p: i for i, p in enumerate(self.producer_table)}
        self._dedup = set(self._keys_of(slots).tolist())
        self.size = n
        self.total_bytes = int(self.nbytes[slots].sum())
        self.next_item_id = int(next_item_id)
        self.evicted_total = int(counters.get("evicted_total", 0))
        self.duplicates_total = int(counters.get("duplicates_total", 0))
        self.oversized_total = int(counters.get("oversized_total", 0))


def _column(values: Sequence[int] | np.ndarray | None, n: int, dtype: type, default: int) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=dtype)
    arr: np.ndarray = np.asarray(values, dtype=dtype)
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"metadata column: expected {n} entries, got {arr.shape}")
    return arr


def _object_array(items: list[bytes]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr

"""The replay consumer's pure core: trajectory records in, `SampledBatch`es out, acks applied.

No Kafka here (`consumers/replay_service.py` is the loop); it takes record values and gives back
what to publish, what to dead-letter and which offsets are safe to commit:

1. `ingest`: decode + validate every trajectory record (and, with `ReplayConfig.env`, check it against that
   env's graph schema), store the still-compressed payload with
   (producer id, sequence) as the de-duplication key; undecodable records come back with their reason;
2. `next_batch`: a `SampledBatch` while fewer than ``max_in_flight`` batches are unacknowledged and
   the rate limiter allows sampling (prioritized: sum-tree sampling with IS weights; fifo: oldest fresh
   items first, each exactly once, stale ones dropped);
3. `apply_acks`: `PriorityUpdate`s (stale indices of evicted items are ignored by key); each counts
   its batch as acknowledged; items the learner rejected (``rejected_keys``) are evicted; in prioritized
   mode the learner's version also retires items older than ``max_staleness`` versions (never sampled
   again);
4. `snapshot_if_due`: in prioritized mode with a snapshot path, an atomic on-disk snapshot, after which
   the offsets it covers may be committed.

Offsets may be committed only once the data is durable: in prioritized mode after a snapshot that
contains it (a `kill -9` loses nothing committed: the restarted service restores the snapshot and
re-reads everything after the committed offsets, and the dedup key drops what the snapshot already
has); without a snapshot path, or in fifo mode, right after the insert.  Offsets are kept per
partition handle, whatever the loop uses for one (it only has to be hashable).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.telemetry import LabelledMetric, telemetry_packet
from tamiyo.replay_store.fifo import OnPolicyFifo
from tamiyo.replay_store.prioritized import PrioritizedReplay
from tamiyo.replay_store.rate_limiter import RateLimiter
from tamiyo.replay_store.replay_config import MODES, ReplayConfig, ReplayStats
from tamiyo.replay_store.schedules import LinearBetaSchedule
from tamiyo.replay_store.snapshot import load_replay_snapshot, save_replay_snapshot
from tamiyo.replay_store.storage import MAX_SEQUENCE, ItemMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingRecord:
    """One consumed record, as the core needs it."""

    partition: Hashable  # the loop's handle for the record's partition
    offset: int
    value: bytes | None
    trace_parent: str = ""  # the context of the loop's `replay.insert` span for this record


@dataclass
class IngestResult:
    rejected: list[tuple[int, LeylineError]] = field(default_factory=list)  # (index into the records, why)
    decode_ms: list[float] = field(default_factory=list)  # per decoded record
    commit: dict[Hashable, int] = field(default_factory=dict)  # offsets safe to commit now


class ReplayCore:
    def __init__(self, config: ReplayConfig, clock: Callable[[], float] = time.monotonic) -> None:
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.config = config
        self.clock = clock
        self.stats = ReplayStats()
        self.encoder = EnvelopeEncoder(source=f"replay/{config.replay_id}")
        self.min_size = config.min_size or config.batch_size
        if config.samples_per_insert is None:
            self.limiter = RateLimiter.min_size(self.min_size)
        else:
            tolerance = max(config.samples_per_insert_tolerance, config.samples_per_insert * config.batch_size)
            self.limiter = RateLimiter(self.min_size, config.samples_per_insert, tolerance)
        self.beta = LinearBetaSchedule(config.beta_start, config.beta_end, config.beta_steps)
        self.store: PrioritizedReplay | OnPolicyFifo
        snapshot = Path(config.snapshot_path) if config.snapshot_path else None
        if config.mode == "prioritized":
            if snapshot is not None and snapshot.exists():
                self.store = load_replay_snapshot(snapshot)
                log.info("restored %d items from %s", len(self.store), snapshot)
                self.limiter.record_insert(len(self.store))
            else:
                self.store = PrioritizedReplay(
                    config.capacity, alpha=config.alpha, max_bytes=config.max_bytes, seed=config.seed
                )
        else:
            if config.capacity < config.batch_size:  # no batch could ever be taken: everything would stall
                raise ValueError(f"fifo capacity {config.capacity} cannot hold a batch of {config.batch_size}")
            self.store = OnPolicyFifo(config.capacity, config.max_policy_lag, max_bytes=config.max_bytes)
        self.schema = env_schema(config.env) if config.env else None
        self.policy_version = 0
        self.next_batch_id = int(time.time() * 1000) << 16  # unique across restarts
        self.outstanding: dict[int, float] = {}  # batch id -> publish time (clock)
        self.uncommitted: dict[Hashable, int] = {}
        self.last_snapshot = clock()
        self.traces: dict[int, str] = {}  # item key -> traceparent of its replay.insert span
        self._beta = 0.0  # the importance-sampling exponent of the last batch

    @property
    def commits_after_insert(self) -> bool:
        """True unless offsets wait for a snapshot (prioritized mode with a snapshot path)."""
        return not self.config.snapshot_path or isinstance(self.store, OnPolicyFifo)

    # ------------------------------------------------------------ 1. trajectories in

    def accepting_trajectories(self) -> bool:
        """Back-pressure: False while the learner is behind (Kafka keeps the rest)."""
        return self.trajectory_room(1) > 0

    def trajectory_room(self, most: int) -> int:
        """How many trajectories (at most ``most``) may be ingested now without the rate limiter
        refusing or the fifo evicting undelivered items: the loop fetches no more than this, so a
        small fifo leaves what the learner has not caught up with in Kafka (where actors see it)."""
        if not self.limiter.can_insert(1):
            return 0
        if isinstance(self.store, OnPolicyFifo):
            return max(0, min(most, self.store.storage.capacity - len(self.store)))
        return most

    def ingest(self, records: Sequence[IncomingRecord]) -> IngestResult:
        result = IngestResult()
        payloads: list[bytes] = []
        producers: list[str] = []
        sequences: list[int] = []
        versions: list[int] = []
        lengths: list[int] = []
        encodings: list[int] = []
        raw_sizes: list[int] = []
        traceparents: list[str] = []
        for i, rec in enumerate(records):
            self.stats.consumed += 1
            t0 = time.perf_counter()
            try:
                decoded = decode_envelope(rec.value, expect=pb.Trajectory, validate=False)  # validated next, once
                unroll = unroll_from_proto(decoded.payload)
            except LeylineError as err:
                result.rejected.append((i, err))
                continue
            env = decoded.envelope
            if self.schema is not None:
                try:
                    unroll.validate(self.schema, structure_checked=True)  # shapes, masks, node counts of this env
                except ValueError as err:
                    result.rejected.append((i, InvalidFieldError(f"not a {self.config.env} trajectory: {err}")))
                    continue
            if env.sequence > MAX_SEQUENCE:  # the dedup key packs it into 40 bits (storage.py)
                result.rejected.append((i, InvalidFieldError(f"sequence {env.sequence} > {MAX_SEQUENCE}")))
                continue
            result.decode_ms.append((time.perf_counter() - t0) * 1e3)
            traceparents.append(rec.trace_parent)
            payloads.append(env.payload)  # stored as it came: already compressed by the actor
            producers.append(env.producer_id)
            sequences.append(int(env.sequence))
            versions.append(int(unroll.policy_versions.min()))
            lengths.append(unroll.length)
            encodings.append(int(env.content_encoding))
            raw_sizes.append(int(env.uncompressed_size))
        if payloads:
            meta = ItemMeta(
                producer_ids=producers,
                sequences=sequences,
                policy_versions=versions,
                lengths=lengths,
                encodings=encodings,
                raw_sizes=raw_sizes,
            )
            self._insert(payloads, meta, traceparents)
        # Only now, after the insert: an exception above leaves these offsets uncommitted (re-read).
        for rec in records:
            self.uncommitted[rec.partition] = rec.offset + 1
        if self.commits_after_insert:
            result.commit = dict(self.uncommitted)
        return result

    def _insert(self, payloads: list[bytes], meta: ItemMeta, traceparents: list[str]) -> None:
        if isinstance(self.store, PrioritizedReplay):
            evicted_before = self.store.storage.evicted_total
            slots = self.store.add(payloads, meta=meta)
            # Evictions shrink the buffer; the rate limiter must know or it over-counts the size.
            evicted = self.store.storage.evicted_total - evicted_before
        else:
            slots = self.store.put(payloads, meta)
            evicted = 0
        stored = int((slots >= 0).sum())
        self._remember_traces(slots, traceparents)
        self.stats.inserted += stored
        self.stats.duplicates += len(payloads) - stored
        self.limiter.record_insert(stored)
        if evicted:
            self.limiter.record_delete(evicted)

    def _remember_traces(self, slots: np.ndarray, traceparents: list[str]) -> None:
        """Keep each stored item's trace context (by its generation key) for when it is sampled."""
        stored = slots >= 0
        keys = self.store.storage.item_ids[slots[stored]]
        for key, tp in zip(keys.tolist(), np.asarray(traceparents, dtype=object)[stored], strict=True):
            self.traces[key] = tp
        if len(self.traces) > self.store.storage.capacity * 1.25:
            live = self.store.storage.item_ids
            oldest_live = int(live[live >= 0].min()) if (live >= 0).any() else 0
            self.traces = {k: v for k, v in self.traces.items() if k >= oldest_live}

    # ------------------------------------------------------------ 2. batches out

    def _expire_outstanding(self) -> None:
        now = self.clock()
        for batch_id, sent in list(self.outstanding.items()):
            if now - sent > self.config.ack_timeout_s:
                log.warning("batch %d was never acknowledged; no longer counted in flight", batch_id)
                del self.outstanding[batch_id]

    def next_batch(self) -> pb.SampledBatch | None:
        """The next batch to publish (counted as in flight from now on), or None if none may go now.

        Each item's ``trace_parent`` is the context of its `replay.insert` span."""
        cfg = self.config
        self._expire_outstanding()
        if len(self.outstanding) >= cfg.max_in_flight or not self.limiter.can_sample(cfg.batch_size):
            return None
        items = self._sample_prioritized() if isinstance(self.store, PrioritizedReplay) else self._take_fifo()
        if not items:
            return None
        for item in items:
            item.trace_parent = self.traces.get(int(item.key), "")
        batch_id = self.next_batch_id
        self.next_batch_id += 1
        self.limiter.record_sample(len(items))
        self.outstanding[batch_id] = self.clock()
        self.stats.batches_published += 1
        return pb.SampledBatch(
            batch_id=batch_id,
            items=items,
            buffer_size=len(self.store),
            beta=self._beta,
            created_at_ns=time.time_ns(),
            replay_id=cfg.replay_id,
        )

    def _sample_prioritized(self) -> list[pb.SampledItem]:
        assert isinstance(self.store, PrioritizedReplay)
        if len(self.store) < self.min_size:
            return []
        if self.store.min_policy_version and self.store.live_count() < self.min_size:
            return []  # retired items still in the ring do not count
        self._beta = self.beta(self.stats.batches_published)
        s = self.store.sample(self.config.batch_size, beta=self._beta)
        return [
            pb.SampledItem(
                index=int(s.indices[i]),
                key=int(s.keys[i]),
                weight=float(s.weights[i]),
                encoding=int(s.encodings[i]),  # type: ignore[arg-type]  # a ContentEncoding value
                uncompressed_size=int(s.raw_sizes[i]),
                trajectory=s.payloads[i],
            )
            for i in range(len(s.payloads))
        ]

    def _take_fifo(self) -> list[pb.SampledItem]:
        assert isinstance(self.store, OnPolicyFifo)
        self._beta = 0.0
        if len(self.store) < self.config.batch_size:
            return []
        f = self.store.take(self.config.batch_size, self.policy_version)
        if len(f) == 0:
            return []
        self.limiter.record_delete(len(f))
        return [
            pb.SampledItem(
                index=int(f.item_ids[i]),
                key=int(f.item_ids[i]),
                weight=1.0,
                encoding=int(f.encodings[i]),  # type: ignore[arg-type]  # a ContentEncoding value
                uncompressed_size=int(f.raw_sizes[i]),
                trajectory=f.payloads[i],
            )
            for i in range(len(f))
        ]

    # ------------------------------------------------------------ 3. acks in

    def apply_acks(self, values: Sequence[bytes | None]) -> list[tuple[int, LeylineError]]:
        """Apply `PriorityUpdate` records; returns (index, reason) of those to dead-letter."""
        rejected: list[tuple[int, LeylineError]] = []
        for i, value in enumerate(values):
            try:
                update = decode_envelope(value, expect=pb.PriorityUpdate).payload
            except LeylineError as err:
                rejected.append((i, err))
                continue
            self.policy_version = max(self.policy_version, int(update.learner_step))
            self._retire_stale()
            if self.outstanding.pop(int(update.batch_id), None) is None:
                self.stats.stale_acks += 1  # another replay's batch, or one that timed out
            else:
                self.stats.acks += 1
            self.stats.rejected_by_learner += len(update.rejected_keys)
            if not isinstance(self.store, PrioritizedReplay):
                continue  # a fifo hands each item out once: nothing of the batch is left to update or evict
            idx = np.asarray(update.indices, dtype=np.int64)
            bad = np.asarray(update.rejected_indices, dtype=np.int64)
            if max(idx.max(initial=0), bad.max(initial=0)) >= self.store.capacity:
                rejected.append((i, InvalidFieldError("priority index beyond capacity")))
                continue
            self.store.evict(bad, np.asarray(update.rejected_keys, dtype=np.int64))
            if idx.size:
                self.stats.priority_updates_applied += self.store.update_priorities(
                    idx,
                    np.asarray(update.priorities, dtype=np.float64),
                    np.asarray(update.keys, dtype=np.int64),
                )
        return rejected

    def _retire_stale(self) -> None:
        """Prioritized mode: stop sampling items too old for the learner's version (ReplayConfig.max_staleness)."""
        cap = self.config.max_staleness
        if cap is None or not isinstance(self.store, PrioritizedReplay):
            return
        size = len(self.store)
        self.store.retire_older_than(self.policy_version - cap)
        if len(self.store) < size:  # the retired prefix of the ring was freed
            self.limiter.record_delete(size - len(self.store))

    # ------------------------------------------------------------ 4. durability

    def snapshot_if_due(self, force: bool = False) -> dict[Hashable, int]:
        """Snapshot the prioritized store when due (blocking file I/O); returns the offsets it makes
        safe to commit (empty when no snapshot was taken)."""
        path = self.config.snapshot_path
        if not path or not isinstance(self.store, PrioritizedReplay) or not self.uncommitted:
            return {}
        if not force and self.clock() - self.last_snapshot < self.config.snapshot_every_s:
            return {}
        offsets = dict(self.uncommitted)
        save_replay_snapshot(self.store, path)
        self.stats.snapshots += 1
        self.last_snapshot = self.clock()
        return offsets

    def committed(self, offsets: Mapping[Hashable, int]) -> None:
        """The loop committed ``offsets``: forget those not superseded since."""
        for partition, offset in offsets.items():
            if self.uncommitted.get(partition) == offset:
                del self.uncommitted[partition]

    # ------------------------------------------------------------ telemetry

    def telemetry_metrics(self, deadlettered: int) -> dict[str, float]:
        s = self.stats
        metrics = {
            "buffer_size": float(len(self.store)),
            "consumed": float(s.consumed),
            "inserted": float(s.inserted),
            "duplicates": float(s.duplicates),
            "batches_published": float(s.batches_published),
            "batches_in_flight": float(len(self.outstanding)),
            "acks": float(s.acks),
            "priority_updates_applied": float(s.priority_updates_applied),
            "rejected_by_learner": float(s.rejected_by_learner),
            "deadlettered": float(deadlettered),
            "snapshots": float(s.snapshots),
            "process_cpu_s": time.process_time(),
        }
        metrics.update({f"store_{k}": float(v) for k, v in self.store.stats().items()})
        return metrics

    def telemetry_value(self, deadletter_reasons: Counter[str]) -> bytes:
        packet = telemetry_packet(
            f"replay/{self.config.replay_id}",
            self.config.run_id,
            self.telemetry_metrics(sum(deadletter_reasons.values())),
            labelled=[
                LabelledMetric("deadlettered_by_reason", float(n), {"reason": r}) for r, n in deadletter_reasons.items()
            ],
        )
        return self.encoder.encode(packet)

"""ReplayCore without a broker: ingest (dedup, dead-letter reasons, commit offsets), batches under the
in-flight window and the rate limiter, acks, snapshots before commits, fifo staleness; fuzzed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, decode_payload_bytes, parse_message
from tamiyo.contracts.errors import (
    InvalidFieldError,
    LeylineError,
    MalformedRecordError,
    NonFiniteError,
    SchemaVersionError,
)
from tamiyo.contracts.examples import example_unroll
from tamiyo.contracts.packing import unroll_from_proto, unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.replay_store.core import IncomingRecord, ReplayCore
from tamiyo.replay_store.replay_config import ReplayConfig
from tamiyo.replay_store.snapshot import load_replay_snapshot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _trajectories(count: int, producer_id: str = "actor-0:1", version: int = 0, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    encoder = EnvelopeEncoder("actor/test", producer_id=producer_id)
    out = []
    for _ in range(count):
        unroll = example_unroll(rng)
        unroll.policy_versions[:] = version
        out.append(encoder.encode(unroll_to_proto(unroll, "example-host")))
    return out


def unroll_from_bytes(item: pb.SampledItem):
    raw = decode_payload_bytes(item.trajectory, item.encoding, item.uncompressed_size)
    return unroll_from_proto(parse_message(pb.Trajectory, raw))


def _records(values: list[bytes | None], partition: str = "p0", first_offset: int = 0) -> list[IncomingRecord]:
    return [IncomingRecord(partition, first_offset + i, v, f"tp-{first_offset + i}") for i, v in enumerate(values)]


def _ack(batch: pb.SampledBatch, learner_step: int = 1, priority: float = 2.0) -> bytes:
    update = pb.PriorityUpdate(batch_id=batch.batch_id, learner_step=learner_step)
    update.indices.extend(it.index for it in batch.items)
    update.keys.extend(it.key for it in batch.items)
    update.priorities.extend([priority] * len(batch.items))
    return EnvelopeEncoder("learner").encode(update)


def test_ingest_stores_dedups_and_names_every_rejected_record():
    core = ReplayCore(ReplayConfig(batch_size=4))
    good = _trajectories(6)
    stale_schema = pb.EventEnvelope()
    stale_schema.ParseFromString(good[0])
    stale_schema.schema_version = 99
    values = [*good, good[2], b"garbage", None, stale_schema.SerializeToString()]
    result = core.ingest(_records(values))
    assert [(i, type(e)) for i, e in result.rejected] == [
        (7, MalformedRecordError),
        (8, MalformedRecordError),
        (9, SchemaVersionError),
    ]
    assert core.stats.consumed == 10 and core.stats.inserted == 6 and core.stats.duplicates == 1
    assert len(result.decode_ms) == 7
    # No snapshot path: everything consumed may be committed right after the insert.
    assert result.commit == {"p0": 10}


def test_batches_wait_for_acks_beyond_the_in_flight_window():
    core = ReplayCore(ReplayConfig(batch_size=4, max_in_flight=2, seed=1))
    core.ingest(_records(_trajectories(12)))
    first, second = core.next_batch(), core.next_batch()
    assert first is not None and second is not None and core.next_batch() is None
    assert first.batch_id != second.batch_id and len(first.items) == 4
    assert all(0.0 < it.weight <= 1.0 and it.trace_parent.startswith("tp-") for it in first.items)
    # Items carry the payload as the actor compressed it, with what the learner needs to decode it.
    for it in first.items:
        raw = decode_payload_bytes(it.trajectory, it.encoding, it.uncompressed_size)
        assert parse_message(pb.Trajectory, raw).length == 20
    assert core.apply_acks([_ack(first)]) == []
    assert core.stats.acks == 1 and core.stats.priority_updates_applied == 4
    assert core.next_batch() is not None and core.next_batch() is None


def test_acks_of_unknown_batches_count_as_stale_and_bad_acks_are_rejected():
    core = ReplayCore(ReplayConfig(batch_size=4, capacity=50))
    core.ingest(_records(_trajectories(4)))
    batch = core.next_batch()
    assert batch is not None
    beyond = pb.PriorityUpdate(batch_id=batch.batch_id, indices=[60], keys=[1], priorities=[1.0])
    nan = pb.PriorityUpdate(batch_id=123, indices=[0], keys=[1], priorities=[float("nan")])
    rejected = core.apply_acks([
        EnvelopeEncoder("l").encode(pb.PriorityUpdate(batch_id=424242, learner_step=3)),
        b"\x00\x01",
        EnvelopeEncoder("l").encode(nan),
        EnvelopeEncoder("l").encode(beyond),
    ])  # fmt: skip
    assert [(i, type(e)) for i, e in rejected] == [
        (1, MalformedRecordError),
        (2, NonFiniteError),
        (3, InvalidFieldError),
    ]
    assert core.stats.stale_acks == 1 and core.stats.acks == 1 and core.policy_version == 3


def test_wire_integers_beyond_what_the_store_holds_are_dead_lettered_not_fatal():
    """Issue 12 item 3: an envelope sequence >= 2**40 (the dedup key's width) and PriorityUpdate indices
    or keys >= 2**63 (uint64 on the wire, int64 in the store) each come back as one rejected record."""
    core = ReplayCore(ReplayConfig(batch_size=2, capacity=50))
    good = _trajectories(3)
    huge = pb.EventEnvelope.FromString(good[1])
    for sequence in (1 << 40, (1 << 63) + 1, (1 << 64) - 1):
        huge.sequence = sequence
        result = core.ingest(_records([good[0], huge.SerializeToString(), good[2]]))
        assert [(i, type(e)) for i, e in result.rejected] == [(1, InvalidFieldError)]
    assert core.stats.inserted == 2 and result.commit == {"p0": 3}  # the bad record's offset is committed too
    batch = core.next_batch()
    assert batch is not None
    for index, key in (((1 << 63), 1), ((1 << 64) - 1, 1), (0, (1 << 63)), (0, (1 << 64) - 1)):
        update = pb.PriorityUpdate(batch_id=batch.batch_id, indices=[index], keys=[key], priorities=[1.0])
        rejected = core.apply_acks([EnvelopeEncoder("l").encode(update)])
        assert [type(e) for _, e in rejected] == [InvalidFieldError]
    assert core.stats.priority_updates_applied == 0


def test_with_the_runs_env_a_trajectory_of_another_schema_is_dead_lettered_at_ingest():
    """Issue 12 item 1: checked here, a wrong-schema trajectory never reaches a batch (where the learner
    would reject the whole batch and the bad item would keep its priority and be sampled again)."""
    from tamiyo.producers.sample_unrolls import host_sim_unrolls

    encoder = EnvelopeEncoder("actor/test", producer_id="a:1")
    good = [encoder.encode(unroll_to_proto(u, "host-sim")) for u in host_sim_unrolls(2, length=5)]
    wrong = _trajectories(1, producer_id="b:1")[0]  # the example schema's graphs, not host-sim's
    core = ReplayCore(ReplayConfig(batch_size=2, capacity=50, env="host-sim"))
    result = core.ingest(_records([good[0], wrong, good[1]]))
    assert [(i, type(e)) for i, e in result.rejected] == [(1, InvalidFieldError)]
    assert "host-sim" in str(result.rejected[0][1]) and core.stats.inserted == 2
    unchecked = ReplayCore(ReplayConfig(batch_size=2, capacity=50))
    assert not unchecked.ingest(_records([wrong])).rejected  # without an env: Leyline checks only


def test_an_insert_that_fails_commits_nothing_new(monkeypatch):
    """Issue 12 item 4: offsets become committable only after the insert they cover succeeded."""
    core = ReplayCore(ReplayConfig(batch_size=2, capacity=50))
    core.ingest(_records(_trajectories(2)))
    assert core.uncommitted == {"p0": 2}

    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("store full")

    monkeypatch.setattr(core.store, "add", broken)
    with pytest.raises(MemoryError):
        core.ingest(_records(_trajectories(3, producer_id="b:1"), first_offset=2))
    assert core.uncommitted == {"p0": 2}


def test_unacknowledged_batches_stop_counting_after_the_ack_timeout():
    clock = FakeClock()
    core = ReplayCore(ReplayConfig(batch_size=4, max_in_flight=1, ack_timeout_s=30.0), clock=clock)
    core.ingest(_records(_trajectories(8)))
    assert core.next_batch() is not None and core.next_batch() is None
    clock.now += 31.0
    assert core.next_batch() is not None


def test_prioritized_offsets_wait_for_a_snapshot_that_contains_them(tmp_path):
    clock = FakeClock()
    path = tmp_path / "replay.npz"
    core = ReplayCore(ReplayConfig(batch_size=4, snapshot_path=str(path), snapshot_every_s=10.0), clock=clock)
    result = core.ingest(_records(_trajectories(5), partition="p1", first_offset=100))
    assert result.commit == {}  # not durable yet
    assert core.snapshot_if_due() == {}  # not due yet
    clock.now += 10.0
    offsets = core.snapshot_if_due()
    assert offsets == {"p1": 105} and core.stats.snapshots == 1
    assert len(load_replay_snapshot(path)) == 5
    core.committed(offsets)
    assert core.snapshot_if_due(force=True) == {}  # nothing left uncommitted: no snapshot needed
    # A restarted core restores the snapshot and counts it towards the sampling minimum.
    restored = ReplayCore(ReplayConfig(batch_size=4, snapshot_path=str(path)))
    assert len(restored.store) == 5 and restored.next_batch() is not None


def test_prioritized_never_samples_what_the_staleness_cap_retired_and_a_snapshot_keeps_the_cap(tmp_path):
    path = tmp_path / "replay.npz"
    config = ReplayConfig(batch_size=4, max_staleness=2, max_in_flight=8, snapshot_path=str(path), seed=3)
    core = ReplayCore(config)
    core.ingest(_records(_trajectories(6, version=0)))
    core.ingest(_records(_trajectories(6, producer_id="late:1", version=1, seed=1), first_offset=6))
    first = core.next_batch()
    assert first is not None
    # The learner reaches version 3: items of version 0 are now 3 > 2 versions old.
    assert core.apply_acks([_ack(first, learner_step=3)]) == []
    assert len(core.store) == 6 and core.limiter.size == 6  # the retired prefix was freed, and counted
    for _ in range(5):
        batch = core.next_batch()
        assert batch is not None
        versions = {int(unroll_from_bytes(it).policy_versions.min()) for it in batch.items}
        assert versions == {1}
    # A version-0 unroll arriving now is stored (its dedup key is seen) but never sampled.
    core.ingest(_records(_trajectories(1, producer_id="later:1", version=0, seed=2), first_offset=12))
    assert core.store.live_count() == 6 and core.store.stats()["retired_total"] == 7
    core.snapshot_if_due(force=True)
    restored = ReplayCore(config)
    assert restored.store.min_policy_version == 1 and restored.store.live_count() == 6


def _ack_rejecting(batch: pb.SampledBatch, bad: set[int], learner_step: int = 1) -> bytes:
    """The learner's ack for ``batch`` with the items at positions ``bad`` rejected (issue 12)."""
    update = pb.PriorityUpdate(batch_id=batch.batch_id, learner_step=learner_step)
    for i, it in enumerate(batch.items):
        if i in bad:
            update.rejected_indices.append(it.index)
            update.rejected_keys.append(it.key)
        else:
            update.indices.append(it.index)
            update.keys.append(it.key)
            update.priorities.append(2.0)
    return EnvelopeEncoder("learner").encode(update)


def test_items_the_learner_rejected_are_evicted_and_a_snapshot_keeps_them_out(tmp_path):
    path = tmp_path / "replay.npz"
    config = ReplayConfig(batch_size=4, max_in_flight=8, snapshot_path=str(path), seed=3)
    core = ReplayCore(config)
    core.ingest(_records(_trajectories(6)))
    first = core.next_batch()
    assert first is not None
    bad_keys = {first.items[0].key, first.items[2].key} - {first.items[1].key, first.items[3].key}
    assert bad_keys, "the batch sampled one item four times"
    bad = {i for i, it in enumerate(first.items) if it.key in bad_keys}
    assert core.apply_acks([_ack_rejecting(first, bad)]) == []
    assert core.stats.acks == 1 and core.stats.rejected_by_learner == len(bad)
    assert core.store.live_count() == 6 - len(bad_keys) and core.store.rejected_total == len(bad_keys)
    for _ in range(6):
        batch = core.next_batch()
        assert batch is not None and not {it.key for it in batch.items} & bad_keys
        assert core.apply_acks([_ack(batch)]) == []
    core.snapshot_if_due(force=True)
    restored = ReplayCore(config)
    assert restored.store.live_count() == 6 - len(bad_keys) and restored.store.rejected_total == len(bad_keys)
    assert restored.telemetry_metrics(0)["store_rejected_total"] == len(bad_keys)


def test_a_fifo_counts_the_items_the_learner_rejected():
    core = ReplayCore(ReplayConfig(mode="fifo", batch_size=4, max_in_flight=2))
    core.ingest(_records(_trajectories(4)))
    batch = core.next_batch()
    assert batch is not None and core.apply_acks([_ack_rejecting(batch, {1})]) == []
    assert core.stats.acks == 1 and core.telemetry_metrics(0)["rejected_by_learner"] == 1.0


def test_rejected_item_fields_off_the_wire_are_checked():
    core = ReplayCore(ReplayConfig(batch_size=2, capacity=16, max_in_flight=8))
    core.ingest(_records(_trajectories(2)))
    batch = core.next_batch()
    assert batch is not None
    beyond = pb.PriorityUpdate(batch_id=batch.batch_id, rejected_indices=[16], rejected_keys=[0])
    uneven = pb.PriorityUpdate(batch_id=123, rejected_indices=[0, 1], rejected_keys=[0])
    huge = pb.PriorityUpdate(batch_id=124, rejected_indices=[1 << 63], rejected_keys=[0])
    values = [EnvelopeEncoder("l").encode(u) for u in (beyond, uneven, huge)]
    rejected = core.apply_acks(values)
    assert [i for i, _ in rejected] == [0, 1, 2] and all(isinstance(e, InvalidFieldError) for _, e in rejected)
    assert core.store.live_count() == 2


def test_without_a_staleness_cap_prioritized_keeps_sampling_old_items():
    core = ReplayCore(ReplayConfig(batch_size=4, max_staleness=None, max_in_flight=8, seed=3))
    core.ingest(_records(_trajectories(6, version=0)))
    first = core.next_batch()
    assert first is not None and core.apply_acks([_ack(first, learner_step=10_000)]) == []
    assert core.next_batch() is not None and core.store.live_count() == 6


def test_committed_keeps_offsets_that_moved_on_since():
    core = ReplayCore(ReplayConfig(batch_size=4, snapshot_path="/nonexistent/x.npz"))
    core.ingest(_records(_trajectories(2), first_offset=0))
    taken = dict(core.uncommitted)
    core.ingest(_records(_trajectories(2, seed=5, producer_id="b:1"), first_offset=2))
    core.committed(taken)
    assert core.uncommitted == {"p0": 4}


def test_fifo_delivers_each_item_once_and_drops_what_is_too_stale():
    core = ReplayCore(ReplayConfig(mode="fifo", batch_size=3, max_policy_lag=2, max_in_flight=5))
    result = core.ingest(_records(_trajectories(3, version=0)))
    assert result.commit == {"p0": 3}  # fifo commits right after the insert
    core.apply_acks([EnvelopeEncoder("l").encode(pb.PriorityUpdate(batch_id=0, learner_step=5))])
    core.ingest(_records(_trajectories(3, producer_id="b:1", version=4, seed=2), first_offset=3))
    batch = core.next_batch()
    assert batch is not None and len(batch.items) == 3 and all(it.weight == 1.0 for it in batch.items)
    assert core.store.stats()["dropped_stale_total"] == 3
    assert core.next_batch() is None


def test_back_pressure_when_the_learner_falls_behind():
    core = ReplayCore(ReplayConfig(batch_size=4, samples_per_insert=1.0, samples_per_insert_tolerance=4.0))
    assert core.accepting_trajectories()
    core.ingest(_records(_trajectories(12)))
    assert not core.accepting_trajectories()  # 12 inserts, no samples: beyond the tolerance
    while core.next_batch() is not None:  # the learner samples (two batches: the in-flight window)
        pass
    assert core.stats.batches_published == 2 and core.accepting_trajectories()


def test_fifo_room_is_what_fits_without_evicting_undelivered_items():
    """The loop fetches at most `trajectory_room` records, so a small fifo never evicts and the rest
    waits in Kafka (where the actors' back-pressure sees it as the group's lag)."""
    core = ReplayCore(ReplayConfig(mode="fifo", capacity=8, batch_size=4, max_policy_lag=100, max_in_flight=1))
    assert core.trajectory_room(512) == 8 and core.trajectory_room(3) == 3
    core.ingest(_records(_trajectories(6)))
    assert core.trajectory_room(512) == 2
    core.ingest(_records(_trajectories(2, producer_id="actor-1:1", seed=3), first_offset=6))
    assert core.trajectory_room(512) == 0 and not core.accepting_trajectories()
    assert core.next_batch() is not None  # 4 delivered: room for 4 more
    assert core.trajectory_room(512) == 4
    assert core.store.stats()["dropped_overflow_total"] == 0


def test_a_fifo_that_cannot_hold_a_batch_is_refused():
    with pytest.raises(ValueError, match="cannot hold a batch"):
        ReplayCore(ReplayConfig(mode="fifo", capacity=16, batch_size=32))


def test_telemetry_reports_the_store_and_dead_letters_by_reason():
    core = ReplayCore(ReplayConfig(batch_size=4, replay_id="r9", run_id="run"))
    core.ingest(_records(_trajectories(3)))
    packet = decode_envelope(core.telemetry_value({"MalformedRecordError": 2}), expect=pb.TelemetryPacket).payload
    plain = {m.name: m.value for m in packet.metrics if not m.labels}
    assert packet.source == "replay/r9" and packet.run_id == "run"
    assert plain["buffer_size"] == 3 and plain["inserted"] == 3 and plain["deadlettered"] == 2
    labelled = [(m.name, dict(m.labels), m.value) for m in packet.metrics if m.labels]
    assert labelled == [("deadlettered_by_reason", {"reason": "MalformedRecordError"}, 2.0)]


def test_modes_are_checked():
    with pytest.raises(ValueError, match="mode"):
        ReplayCore(ReplayConfig(mode="lifo"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.none()), max_size=12), st.integers(0, 2**31))
def test_fuzzed_records_are_stored_or_rejected_never_raised(values, seed):
    """Random bytes, truncated and bit-flipped real trajectories: every record is either stored (or a duplicate)
    or comes back with a `LeylineError`; the core never raises and always offers the offsets."""
    rng = np.random.default_rng(seed)
    real = _trajectories(3, seed=seed % 7)
    mutated: list[bytes | None] = list(values)
    for value in real:
        cut = value[: int(rng.integers(0, len(value)))]
        flipped = bytearray(value)
        flipped[int(rng.integers(0, len(flipped)))] ^= 0xFF
        mutated += [value, cut, bytes(flipped)]
    core = ReplayCore(ReplayConfig(batch_size=2))
    result = core.ingest(_records(mutated))
    assert all(isinstance(err, LeylineError) for _, err in result.rejected)
    stored = core.stats.inserted + core.stats.duplicates
    assert stored + len(result.rejected) == len(mutated) and core.stats.inserted >= 3
    assert result.commit == {"p0": len(mutated)}

"""The replay consumer against the real broker: dedup, dead letters, back-pressure, priorities, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.clients import make_admin
from tamiyo.consumers.replay_service import ReplayService
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, decode_payload_bytes
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.topics import Topics
from tamiyo.replay_store.replay_config import ReplayConfig

from .helpers import latest_metrics, produce, read, trajectory_records, wait_until

pytestmark = pytest.mark.broker


async def test_replay_dedups_deadletters_and_respects_in_flight_limit(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    good = trajectory_records(20, "a:1", seed=1) + trajectory_records(20, "b:1", seed=2)
    garbage = [b"", b"\x00garbage", good[0][:50], b"\xff" * 300]
    bad_version = pb.EventEnvelope.FromString(good[1])
    bad_version.schema_version = 9
    await produce(kafka_settings, topics.trajectories, [*good, *good[:5], *garbage, bad_version.SerializeToString()])

    cfg = ReplayConfig(batch_size=8, max_in_flight=2, run_id=run_name, telemetry_every_s=0.5, capacity=1000)
    service = ReplayService(cfg, kafka_settings, topics)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await wait_until(lambda: service.stats.consumed == 50, what="all records consumed")
        await wait_until(lambda: service.stats.batches_published == 2, what="two batches")
        assert service.stats.inserted == 40 and service.stats.duplicates == 5
        assert service.deadletter.counts == {"MalformedRecordError": 4, "SchemaVersionError": 1}
        await asyncio.sleep(1.5)
        assert service.stats.batches_published == 2  # nothing acknowledged: no more batches

        batches = [
            decode_envelope(r.value, expect=pb.SampledBatch).payload
            for r in await read(kafka_settings, topics.batches, 2)
        ]
        first = batches[0]
        assert len(first.items) == 8
        for item in first.items:
            assert 0.0 < item.weight <= 1.0
            raw = decode_payload_bytes(item.trajectory, item.encoding, item.uncompressed_size)
            unroll_from_proto(pb.Trajectory.FromString(raw))

        # Ack the first batch with fresh priorities (one with a wrong key: a stale update).
        keys = [it.key for it in first.items]
        keys[0] += 12345
        update = pb.PriorityUpdate(
            batch_id=first.batch_id,
            indices=[it.index for it in first.items],
            keys=keys,
            priorities=list(np.linspace(0.1, 3.0, 8)),
            learner_step=3,
        )
        await produce(kafka_settings, topics.priorities, [EnvelopeEncoder("learner").encode(update)])
        await wait_until(lambda: service.stats.batches_published == 3, what="a third batch after the ack")
        assert service.stats.priority_updates_applied == 7
        assert service.core.store.stale_updates == 1

        letters = await read(kafka_settings, topics.deadletter, 5)
        reasons = sorted(decode_envelope(r.value, expect=pb.DeadLetter).payload.reason for r in letters)
        assert reasons == ["MalformedRecordError"] * 4 + ["SchemaVersionError"]
        letter = decode_envelope(letters[0].value).payload
        assert letter.source_topic == topics.trajectories and letter.offset >= 0
        metrics = latest_metrics(await read(kafka_settings, topics.telemetry, 1), "replay/")
        assert metrics["buffer_size"] == 40 and metrics["deadlettered"] == 5
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_fifo_mode_delivers_each_item_once_and_drops_stale(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    cfg = ReplayConfig(mode="fifo", batch_size=6, max_in_flight=4, max_policy_lag=2, run_id=run_name)
    service = ReplayService(cfg, kafka_settings, topics)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        # The learner announces policy version 10 (priorities are read from "latest": repeat until seen).
        announce = EnvelopeEncoder("learner")
        for _ in range(100):
            await produce(kafka_settings, topics.priorities, [announce.encode(pb.PriorityUpdate(learner_step=10))])
            if service.core.policy_version == 10:
                break
            await asyncio.sleep(0.2)
        assert service.core.policy_version == 10
        # Items from version 0 are beyond the lag of 2 and must be dropped, not delivered.
        await produce(kafka_settings, topics.trajectories, trajectory_records(6, "old:1", seed=3, version=0))
        await produce(kafka_settings, topics.trajectories, trajectory_records(12, "new:1", seed=4, version=10))
        await wait_until(lambda: service.stats.consumed == 18, what="all consumed")
        await wait_until(lambda: service.core.store.stats()["delivered_total"] == 12, what="two deliveries")
        assert service.core.store.stats()["dropped_stale_total"] == 6
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    batches = [decode_envelope(r.value).payload for r in await read(kafka_settings, topics.batches, 2, timeout_s=5)]
    items = [it for b in batches for it in b.items]
    assert len(items) == 12 and len({it.key for it in items}) == 12  # each item exactly once
    for it in items:
        raw = decode_payload_bytes(it.trajectory, it.encoding, it.uncompressed_size)
        assert unroll_from_proto(pb.Trajectory.FromString(raw)).policy_versions[0] == 10


async def _committed(settings, group: str, topic: str) -> int:
    admin = make_admin(settings)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def test_replay_survives_kill_9_without_losing_committed_trajectories(kafka_settings, run_name, tmp_path):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    snapshot = tmp_path / "replay.npz"
    group = f"replay-{run_name}"
    cmd = [
        sys.executable,
        "-m",
        "tamiyo.cli.main",
        "replay",
        "--run",
        run_name,
        "--bootstrap",
        kafka_settings.bootstrap,
        "--snapshot-path",
        str(snapshot),
        "--snapshot-every",
        "0.5",
        "--telemetry-every",
        "0.5",
        "--group-id",
        group,
        "--batch-size",
        "1000",
        "--capacity",
        "5000",
    ]
    await produce(kafka_settings, topics.trajectories, trajectory_records(30, "a:1", seed=5))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(300):
            if snapshot.exists() and await _committed(kafka_settings, group, topics.trajectories) == 30:
                break
            await asyncio.sleep(0.2)
        assert await _committed(kafka_settings, group, topics.trajectories) == 30
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # More experience arrives while the replay is down.
        await produce(kafka_settings, topics.trajectories, trajectory_records(10, "b:1", seed=6))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        metrics: dict[str, float] = {}
        for _ in range(150):
            records = await read(kafka_settings, topics.telemetry, 10_000, timeout_s=0.5)
            metrics = latest_metrics(records, "replay/")
            if metrics.get("buffer_size") == 40:
                break
        assert metrics.get("buffer_size") == 40
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert json.loads(out.decode().strip().splitlines()[-1])["inserted"] == 10  # the 30 came from the snapshot


async def test_a_full_fifo_leaves_the_rest_in_kafka_and_resumes_after_acks(kafka_settings, run_name):
    """fifo back-pressure: a queue of 6 takes 6 of 20 trajectories and pauses its partitions (still
    polling, so the group keeps it); the other 14 wait in Kafka as the group's lag (what actors throttle
    on); nothing is evicted; acks free the queue and consumption resumes."""
    from tamiyo.bus.backlog import GroupBacklog

    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    await produce(kafka_settings, topics.trajectories, trajectory_records(20, "a:1", seed=3))
    cfg = ReplayConfig(mode="fifo", capacity=6, batch_size=3, max_in_flight=1, max_policy_lag=100, run_id=run_name)
    service = ReplayService(cfg, kafka_settings, topics)
    backlog = GroupBacklog(kafka_settings, topics.trajectories, service.group_id)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await backlog.start()
    try:
        await wait_until(lambda: service.stats.batches_published == 1, what="a first batch")
        await asyncio.sleep(1.0)
        # 3 in the batch in flight + a full queue of 6 taken; the rest waits in Kafka.
        assert service.stats.consumed == 9 and len(service.core.store) == 6
        assert await backlog.waiting() == 11
        batches = [
            decode_envelope(r.value, expect=pb.SampledBatch).payload
            for r in await read(kafka_settings, topics.batches, 1)
        ]
        ack = pb.PriorityUpdate(batch_id=batches[0].batch_id, learner_step=1)
        await produce(kafka_settings, topics.priorities, [EnvelopeEncoder("learner").encode(ack)])
        await wait_until(lambda: service.stats.consumed == 12, what="consumption resumed after the ack")
        assert service.core.store.stats()["dropped_overflow_total"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        await backlog.stop()

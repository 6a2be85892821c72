"""The learner service against the real broker: trains, acks with priorities, signs snapshots,
dead-letters bad batches, withholds snapshots after non-finite updates, and resumes exactly."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import pytest
import torch

from tamiyo.bus.admin import ensure_topics
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, encode_payload_bytes
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import verify_snapshot
from tamiyo.contracts.topics import Topics
from tamiyo.learner.checkpoint import load_checkpoint
from tamiyo.learner.core import LearnerConfig
from tamiyo.learner.service import LearnerService
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector
from tests.keys import SIGNER, TRUSTED, write_keys

from .helpers import produce, read

pytestmark = pytest.mark.broker
ENV = "gym:CartPole-v1"


def _batches(count: int, batch_id0: int = 1, reward_scale: float = 1.0) -> list[bytes]:
    envs = [make_env(ENV) for _ in range(4)]
    torch.manual_seed(1)
    policy = ModelPolicy(TamiyoGNN(envs[0].schema, ModelConfig(hidden=16)))
    collector = RolloutCollector(envs, policy, 10, seed=3, actor_id="a", env_id=ENV)
    enc = EnvelopeEncoder("replay/test")
    out = []
    for b in range(count):
        items = []
        for i, u in enumerate(collector.collect()):
            u.rewards = (u.rewards * reward_scale).astype(np.float32)
            raw = unroll_to_proto(u, "gym").SerializeToString()
            encoding, body = encode_payload_bytes(raw)
            items.append(
                pb.SampledItem(
                    index=b * 4 + i,
                    key=7,
                    weight=0.5 + 0.1 * i,
                    encoding=encoding,
                    uncompressed_size=len(raw),
                    trajectory=body,
                )
            )
        out.append(enc.encode(pb.SampledBatch(batch_id=batch_id0 + b, items=items, buffer_size=100)))
    return out


def _config(run_name: str, tmp_path, **kw) -> LearnerConfig:
    return LearnerConfig(
        algo="impala",
        env=ENV,
        run_id=run_name,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_every=2,
        model=ModelConfig(hidden=16),
        **kw,
    )


async def test_learner_trains_acks_snapshots_deadletters_and_resumes(kafka_settings, run_name, tmp_path):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    await produce(kafka_settings, topics.batches, [*_batches(2)[:1], b"not a batch", *_batches(3)[1:]])

    service = LearnerService(_config(run_name, tmp_path, max_updates=3), kafka_settings, topics, SIGNER)
    result = await asyncio.wait_for(service.run(), timeout=120)
    assert result["updates"] == 3 and result["version"] == 3

    acks = [
        decode_envelope(r.value, expect=pb.PriorityUpdate).payload
        for r in await read(kafka_settings, topics.priorities, 4)
    ]
    real = [a for a in acks if a.batch_id]
    assert [a.batch_id for a in real] == [1, 2, 3]
    for a in real:
        assert len(a.indices) == len(a.keys) == len(a.priorities) == 4
        assert all(p > 0 and np.isfinite(p) for p in a.priorities)
    assert [a.learner_step for a in real] == [1, 2, 3]

    snaps = [
        decode_envelope(r.value, expect=pb.PolicySnapshot).payload for r in await read(kafka_settings, topics.policy, 4)
    ]
    assert [s.version for s in snaps] == [0, 1, 2, 3]
    for s in snaps:
        verify_snapshot(s, TRUSTED)
        assert s.policy_id == "tamiyo" and s.algo == "impala"

    letters = [decode_envelope(r.value).payload for r in await read(kafka_settings, topics.deadletter, 1)]
    assert len(letters) == 1 and letters[0].reason == "MalformedRecordError"

    telemetry = [decode_envelope(r.value).payload for r in await read(kafka_settings, topics.telemetry, 3)]
    names = {m.name for t in telemetry for m in t.metrics}
    assert {
        "rho_mean",
        "c_mean",
        "is_weight_mean",
        "policy_lag_mean",
        "samples_per_s",
        "buffer_size",
        "entropy",
    } <= names

    # Resume: the same weights, optimizer state and counters as at the end of the run.
    _, counters = load_checkpoint(tmp_path / "ckpt")
    assert counters == {"updates": 3, "version": 3, "env_steps": 120}
    resumed = LearnerService(_config(run_name, tmp_path, resume=True), kafka_settings, topics, SIGNER)
    assert resumed.core.version == 3 and resumed.core.updates == 3
    for a, b in zip(resumed.core.model.parameters(), service.core.model.parameters(), strict=True):
        assert torch.equal(a, b)
    sa, sb = resumed.core.algorithm.optimizer.state_dict(), service.core.algorithm.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for pid, st in sb["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(sa["state"][pid][k]), torch.as_tensor(v))


async def test_non_finite_update_never_produces_a_snapshot(kafka_settings, run_name, tmp_path):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    # Finite float32 rewards so large that the loss overflows: the step must be refused.
    await produce(kafka_settings, topics.batches, _batches(1, reward_scale=3e38))
    service = LearnerService(_config(run_name, tmp_path, max_seconds=15), kafka_settings, topics, SIGNER)
    before = [p.detach().clone() for p in service.core.model.parameters()]
    task = asyncio.create_task(service.run())
    acks = await read(kafka_settings, topics.priorities, 2, timeout_s=60)
    await asyncio.wait_for(task, timeout=60)
    assert len(acks) == 2  # the announcement and the ack of the refused batch
    assert service.core.updates == 0 and service.core.algorithm.breaker.total_failures == 1
    for a, b in zip(before, service.core.model.parameters(), strict=True):
        assert torch.equal(a, b)
    snaps = [decode_envelope(r.value).payload for r in await read(kafka_settings, topics.policy, 2, timeout_s=3)]
    assert [s.version for s in snaps] == [0]  # only the initial policy


async def test_learner_reruns_a_recorded_batch_stream_offline(kafka_settings, run_name, tmp_path):
    """Record a run's batches to a file, replay them into a new run, train on them; the learner stops when idle."""
    from tamiyo.consumers.topic_replay import record_topic, replay_file

    original, rerun = Topics.for_run(run_name), Topics.for_run(run_name + "r")
    await ensure_topics(kafka_settings, original)
    await ensure_topics(kafka_settings, rerun)
    await produce(kafka_settings, original.batches, _batches(3))
    recording = str(tmp_path / "batches.tyrec")
    await record_topic(kafka_settings, original.batches, recording)
    await replay_file(kafka_settings, recording, rerun.batches)

    config = _config(run_name + "r", tmp_path, stop_when_idle_s=3.0)
    service = LearnerService(config, kafka_settings, rerun, SIGNER)
    result = await asyncio.wait_for(service.run(), timeout=120)
    assert result["updates"] == 3


async def test_learner_cli_trains_on_a_recording_and_stops_by_itself(kafka_settings, run_name, tmp_path):
    from tamiyo.consumers.topic_replay import record_topic

    source = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, source)
    await produce(kafka_settings, source.batches, _batches(2))
    recording = str(tmp_path / "b.tyrec")
    await record_topic(kafka_settings, source.batches, recording)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tamiyo.cli.main", "learner", "--from-recording", recording, "--run", run_name + "x",
        "--env", ENV, "--hidden", "16", "--stop-when-idle", "3", "--bootstrap", kafka_settings.bootstrap,
        "--signing-key", str(write_keys(tmp_path / "keys")[0]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(out.decode().strip().splitlines()[-1])["updates"] == 2


async def test_a_learner_restarted_without_resume_continues_the_published_versions(kafka_settings, run_name, tmp_path):
    """Issue 12 item 5 (compose restarts a failed learner without --resume): the new learner reads the
    policy topic, takes the newest snapshot's weights and version, and publishes only newer versions."""
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    batches = _batches(3)
    await produce(kafka_settings, topics.batches, batches[:2])
    first = LearnerService(_config(run_name, tmp_path / "a", max_updates=2), kafka_settings, topics, SIGNER)
    assert (await asyncio.wait_for(first.run(), timeout=120))["version"] == 2
    await produce(kafka_settings, topics.batches, batches[2:])
    second = LearnerService(_config(run_name, tmp_path / "b", max_updates=1, seed=5), kafka_settings, topics, SIGNER)
    assert (await asyncio.wait_for(second.run(), timeout=120))["version"] == 3

    snaps = [
        decode_envelope(r.value, expect=pb.PolicySnapshot).payload for r in await read(kafka_settings, topics.policy, 5)
    ]
    assert [s.version for s in snaps] == [0, 1, 2, 2, 3]
    assert snaps[3].sha256 == snaps[2].sha256  # the restarted learner started from the published weights


async def test_offsets_are_committed_only_for_updates_a_checkpoint_holds(kafka_settings, run_name, tmp_path):
    """A learner that dies after its last checkpoint leaves the batches since uncommitted; `--resume`
    restores the checkpoint (weights and optimizer together) and trains on them again, with versions
    that still only go up."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    await produce(kafka_settings, topics.batches, _batches(3))
    service = LearnerService(_config(run_name, tmp_path, max_updates=3), kafka_settings, topics, SIGNER)
    real_checkpoint, calls = service.core.checkpoint, []

    def checkpoint_then_die() -> bool:  # the checkpoint at update 2 is written; the one at the end never is
        calls.append(service.core.updates)
        return real_checkpoint() if len(calls) == 1 else False

    service.core.checkpoint = checkpoint_then_die  # type: ignore[method-assign]
    assert (await asyncio.wait_for(service.run(), timeout=120))["updates"] == 3
    assert calls == [2, 3]

    async def committed() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_settings.bootstrap, group_id=service.group_id)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(topics.batches, 0)) or 0
        finally:
            await consumer.stop()

    assert await committed() == 2  # batch 3's update is in no checkpoint: not committed
    resumed = LearnerService(_config(run_name, tmp_path, resume=True, max_updates=3), kafka_settings, topics, SIGNER)
    assert resumed.core.updates == 2 and resumed.core.resumed
    assert (await asyncio.wait_for(resumed.run(), timeout=120))["updates"] == 3
    assert await committed() == 3
    acks = [
        decode_envelope(r.value, expect=pb.PriorityUpdate).payload
        for r in await read(kafka_settings, topics.priorities, 6)
    ]
    assert [a.batch_id for a in acks if a.batch_id] == [1, 2, 3, 3]  # batch 3 learned again
    snaps = [
        decode_envelope(r.value, expect=pb.PolicySnapshot).payload for r in await read(kafka_settings, topics.policy, 6)
    ]
    versions = [s.version for s in snaps]
    assert versions == sorted(set(versions)) and versions[-1] > 3  # strictly increasing across the restart

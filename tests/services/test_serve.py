"""Serving: state packets in, greedy AdaptationCommands out; bad packets dead-lettered; policy hot swap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.clients import make_producer
from tamiyo.consumers.serve_core import Decider, GreedyPolicy
from tamiyo.consumers.serving import ServeConfig, ServeService
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.commands import command_from_action
from tamiyo.contracts.errors import (
    InvalidFieldError,
    MalformedRecordError,
    NonFiniteError,
    SchemaVersionError,
    UnknownPayloadTypeError,
)
from tamiyo.contracts.packing import graphs_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.topics import Topics
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.signing import signed_snapshot
from tamiyo.producers.controllers import make_controller
from tamiyo.producers.envs import make_env
from tests.keys import SIGNER, TRUSTED, hostile_snapshots, write_keys

from .helpers import read

POLICY_ID = "tamiyo-serving"


def _states(n: int, seed: int = 0, steps: int = 4):
    """``n`` (env, packet) pairs from real host-sim runs, a few heuristic steps in."""
    out = []
    for i in range(n):
        env = make_env("host-sim", seed=seed * 100 + i)
        ctl = make_controller("random", seed=seed * 100 + i)
        obs = env.reset()
        ctl.reset()
        for _ in range((i % steps) + 1):
            obs = env.step(ctl.act(obs, env.info())).observation
        out.append((env, obs, env.state_packet()))
    return out


def _model(seed: int, schema) -> TamiyoGNN:
    torch.manual_seed(seed)
    return TamiyoGNN(schema, ModelConfig(hidden=16)).eval()


def _greedy(model: TamiyoGNN, obs) -> np.ndarray:
    return ModelPolicy(model, deterministic=True)(obs.graph, obs.action_mask[None])


def _joint(action, s: int, b: int) -> int:
    return (int(action[0]) * s + int(action[1])) * b + int(action[2])


def _bad_records(packet: pb.SystemStatePacket, enc: EnvelopeEncoder) -> dict[str, bytes]:
    nan_loss = pb.SystemStatePacket()
    nan_loss.CopyFrom(packet)
    nan_loss.validation_loss = float("nan")
    nan_graph = pb.SystemStatePacket()
    nan_graph.CopyFrom(packet)
    block = nan_graph.graph.nodes[0]
    block.features = np.full(len(block.features) // 4, np.nan, dtype="<f4").tobytes()
    short_mask = pb.SystemStatePacket()
    short_mask.CopyFrom(packet)
    short_mask.action_mask = packet.action_mask[:-1]
    no_action = pb.SystemStatePacket()
    no_action.CopyFrom(packet)
    no_action.action_mask = bytes(len(packet.action_mask))
    gym = make_env("gym:CartPole-v1")
    other_schema = pb.SystemStatePacket()
    other_schema.CopyFrom(packet)
    other_schema.graph.CopyFrom(graphs_to_proto(gym.reset().graph, ""))
    future = pb.EventEnvelope.FromString(enc.encode(packet))
    future.schema_version = 99
    return {
        "nan_loss": enc.encode(nan_loss),
        "nan_graph": enc.encode(nan_graph),
        "short_mask": enc.encode(short_mask),
        "no_action": enc.encode(no_action),
        "other_schema": enc.encode(other_schema),
        "telemetry_not_state": enc.encode(pb.TelemetryPacket(source="x")),
        "schema_version": future.SerializeToString(),
        "garbage": b"\x00not an envelope\xff" * 3,
    }


EXPECTED_REASONS = {
    "nan_loss": NonFiniteError,
    "nan_graph": NonFiniteError,
    "short_mask": InvalidFieldError,
    "no_action": InvalidFieldError,
    "other_schema": InvalidFieldError,
    "telemetry_not_state": UnknownPayloadTypeError,
    "schema_version": SchemaVersionError,
    "garbage": MalformedRecordError,
}


# ---------------------------------------------------------------- pure (no broker)


def test_command_from_action_matches_host_env_command_for():
    checked = 0
    for env, obs, _ in _states(4, seed=3):
        s, b = env.num_slots, env.num_blueprints
        ids = [bp.blueprint_id for bp in env.blueprints]
        for joint in np.flatnonzero(obs.action_mask):
            action = np.array([joint // (s * b), (joint // b) % s, joint % b])
            want = env.command_for(action, log_prob=-0.5, policy_version=7)
            got = command_from_action(
                action,
                run_id=env.run_id,
                epoch=env.info()["epoch"],
                blueprint_ids=ids,
                log_prob=-0.5,
                policy_version=7,
                issued_at_ns=want.issued_at_ns,
            )
            assert got == want
            checked += 1
    assert checked > 10


def test_decider_is_greedy_batched_and_rejects_bad_packets():
    states = _states(6)
    schema = states[0][0].schema
    model = _model(0, schema)
    decider = Decider(GreedyPolicy(model, version=3), schema, [bp.blueprint_id for bp in states[0][0].blueprints])
    enc = EnvelopeEncoder("test")
    bad = _bad_records(states[0][2], enc)
    values = [enc.encode(p) for _, _, p in states] + list(bad.values())
    decisions = decider.decide(values)
    for (env, obs, pkt), d in zip(states, decisions, strict=False):
        assert d.error is None and d.key == pkt.training_run_id.encode()
        cmd = decode_envelope(d.value, expect=pb.AdaptationCommand).payload
        assert cmd == d.command and cmd.policy_version == 3 and cmd.training_run_id == env.run_id
        step = _greedy(model, obs)
        assert cmd.log_prob == pytest.approx(float(step.log_probs[0]), abs=1e-5)
        want = env.command_for(step.actions[0], log_prob=cmd.log_prob, policy_version=3)
        want.issued_at_ns = cmd.issued_at_ns
        assert cmd == want
    for (name, cls), d in zip(EXPECTED_REASONS.items(), decisions[len(states) :], strict=True):
        assert isinstance(d.error, cls), (name, d.error)


# ---------------------------------------------------------------- against the broker


@pytest.mark.broker
async def test_serve_answers_dead_letters_and_hot_swaps(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    states = _states(5, seed=1)
    env0 = states[0][0]
    schema = env0.schema
    m1, m2 = _model(1, schema), _model(2, schema)
    producer = make_producer(kafka_settings)
    await producer.start()
    learner = EnvelopeEncoder("test-promote")
    client = EnvelopeEncoder("test-host")

    async def publish_policy(model, version):
        snap = signed_snapshot(model, version=version, policy_id=POLICY_ID, signer=SIGNER)
        await producer.send_and_wait(topics.policy, learner.encode(snap), key=POLICY_ID.encode())

    async def send_states(values):
        for v in values:
            await producer.send_and_wait(topics.state, v, key=b"host")

    service = ServeService(
        ServeConfig(env="host-sim", policy_id=POLICY_ID, run_id=run_name, telemetry_every_s=0.5, wait_for_policy_s=30),
        kafka_settings,
        topics,
        TRUSTED,
    )
    stop = asyncio.Event()
    try:
        # Another policy id on the same topic is ignored; ours (v1) is served.
        other = signed_snapshot(m2, version=50, policy_id="tamiyo", signer=SIGNER)
        await producer.send_and_wait(topics.policy, learner.encode(other), key=b"tamiyo")
        await publish_policy(m1, 1)
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.ready.wait(), 60)
        assert service.policy.version == 1

        bad = _bad_records(states[0][2], client)
        good_values = [client.encode(p) for _, _, p in states]
        # Interleave: a bad record between good ones must not stop serving.
        mixed = [good_values[0], *list(bad.values())[:4], *good_values[1:3], *list(bad.values())[4:], *good_values[3:]]
        await send_states(mixed)
        commands = await read(kafka_settings, topics.commands, len(states), timeout_s=30)
        assert len(commands) == len(states)
        by_run = {}
        for rec in commands:
            cmd = decode_envelope(rec.value, expect=pb.AdaptationCommand).payload
            assert rec.key == cmd.training_run_id.encode()
            by_run[cmd.training_run_id] = cmd
        assert set(by_run) == {env.run_id for env, _, _ in states}  # one command per packet, keyed by run id
        s, b = env0.num_slots, env0.num_blueprints
        for env, obs, _ in states:
            cmd = by_run[env.run_id]
            step = _greedy(m1, obs)
            assert obs.action_mask[_joint(step.actions[0], s, b)]  # valid under the packet's mask
            want = env.command_for(step.actions[0], log_prob=cmd.log_prob, policy_version=1)
            want.issued_at_ns = cmd.issued_at_ns
            assert cmd == want  # the greedy action of the served policy
        letters = await read(kafka_settings, topics.deadletter, len(bad), timeout_s=20)
        reasons = sorted(decode_envelope(r.value, expect=pb.DeadLetter).payload.reason for r in letters)
        assert reasons == sorted(cls.__name__ for cls in EXPECTED_REASONS.values())
        assert service.stats.dead_lettered == len(bad)

        # Forged, tampered and HMAC-era snapshots with newer versions are refused; v1 stays served.
        hostile = hostile_snapshots(m2, version=9, policy_id=POLICY_ID)
        for snap in hostile.values():
            await producer.send_and_wait(topics.policy, learner.encode(snap), key=POLICY_ID.encode())
        deadline = time.monotonic() + 30
        while sum(service.acceptor.stats.rejected.values()) < len(hostile) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert service.acceptor.stats.rejected["SignatureError"] == len(hostile) and service.policy.version == 1

        # Hot swap: a newer snapshot of the serving id is picked up without a restart.
        await publish_policy(m2, 2)
        deadline = time.monotonic() + 30
        while service.policy.version != 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert service.policy.version == 2
        more = _states(3, seed=2)
        await send_states([client.encode(p) for _, _, p in more])
        commands = await read(kafka_settings, topics.commands, len(states) + len(more), timeout_s=30)
        later = [decode_envelope(r.value, expect=pb.AdaptationCommand).payload for r in commands[len(states) :]]
        assert len(later) == len(more)
        later_by_run = {c.training_run_id: c for c in later}
        for env, obs, _ in more:
            cmd = later_by_run[env.run_id]
            assert cmd.policy_version == 2
            want = env.command_for(_greedy(m2, obs).actions[0], log_prob=cmd.log_prob, policy_version=2)
            want.issued_at_ns = cmd.issued_at_ns
            assert cmd == want

        # Per-decision latency reaches telemetry.
        deadline = time.monotonic() + 10
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline and metrics.get("decisions", 0) < len(states) + len(more):
            tel = await read(kafka_settings, topics.telemetry, 1, timeout_s=2)
            for rec in tel:
                p = decode_envelope(rec.value, expect=pb.TelemetryPacket).payload
                if p.source.startswith("serve/"):
                    metrics = {m.name: m.value for m in p.metrics if not m.labels}
            await asyncio.sleep(0.3)
        assert metrics["decisions"] == len(states) + len(more)
        assert 0 < metrics["decision_latency_ms_p50"] <= metrics["decision_latency_ms_p95"]
        assert metrics["dead_lettered"] == len(bad)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()


@pytest.mark.broker
async def test_promote_publishes_the_pareto_choice_signed(kafka_settings, run_name, tmp_path, capsys):
    import json

    from tamiyo.cli.main import main as cli
    from tamiyo.contracts.signing import verify_snapshot
    from tamiyo.policy.snapshot import encode_snapshot, write_snapshot
    from tamiyo.policy.swappable import SwappablePolicy
    from tamiyo.policy.verification import SnapshotAcceptor, SnapshotVerifier

    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    schema = make_env("host-sim").schema
    paths = []
    for i in range(2):
        write_snapshot(encode_snapshot(_model(10 + i, schema), version=5 + i), tmp_path / f"c{i}")
        paths.append(str(tmp_path / f"c{i}" / "policy.safetensors"))
    signing_key, _ = write_keys(tmp_path / "keys")
    argv = ["promote", "--candidates", *paths, "--env", "host-sim", "--tasks", "2", "--run", run_name,
            "--bootstrap", kafka_settings.bootstrap, "--signing-key", str(signing_key)]  # fmt: skip
    # The CLI runs its own event loop: keep it off this test's loop.
    assert await asyncio.to_thread(cli, argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["chosen"] in paths and report["chosen"] in report["frontier"]
    assert {c["candidate"] for c in report["candidates"]} == set(paths)
    assert set(report["candidates"][0]["objectives"]) == {"mean_return", "worst_decile_return", "params_added"}
    assert report["published"]["policy_id"] == POLICY_ID and report["published"]["version"] == 1
    # Promoting again publishes a newer version (the serving subscriber only takes newer ones).
    assert await asyncio.to_thread(cli, argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["published"]["version"] == 2 and again["chosen"] == report["chosen"]

    records = await read(kafka_settings, topics.policy, 2, timeout_s=20)
    snaps = [decode_envelope(r.value, expect=pb.PolicySnapshot).payload for r in records]
    assert [s.version for s in snaps] == [1, 2] and {r.key for r in records} == {POLICY_ID.encode()}
    for s in snaps:
        verify_snapshot(s, TRUSTED)
        assert s.weights == Path(report["chosen"]).read_bytes()
    # What `tamiyo serve --policy-id tamiyo-serving` runs: the subscriber accepts it.
    follower = SnapshotAcceptor(SwappablePolicy(), SnapshotVerifier(TRUSTED, POLICY_ID, schema))
    assert follower.accept(records[-1].value) and follower.policy.version == 2

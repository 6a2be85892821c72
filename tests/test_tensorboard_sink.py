"""Telemetry as TensorBoard scalars (cli/tensorboard_sink.py), read back with TensorBoard's own event reader.

Broker-free: the mapping, the sink fed the envelopes a service publishes (the standalone learner's and
actor's steps), `tamiyo train`'s monitor (the run's frames as the step, the ``run/`` tags), and the
learner and actor loops handing their telemetry to an injected sink."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tamiyo.bus.clients import KafkaSettings
from tamiyo.cli.extras import MissingExtraError
from tamiyo.cli.run_monitor import RunMonitor
from tamiyo.cli.tensorboard_sink import (
    TensorBoardSink,
    packet_metrics,
    telemetry_scalars,
    telemetry_step,
    tensorboard_sink,
)
from tamiyo.contracts.codec import encode_envelope
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.records import OutgoingRecord
from tamiyo.contracts.telemetry import LabelledMetric, telemetry_packet
from tamiyo.contracts.topics import Topics

T0 = 1_700_000_000 * 10**9


def _learner(updates: int, env_steps: int, loss: float) -> pb.TelemetryPacket:
    metrics = {"updates": updates, "env_steps": env_steps, "loss": loss, "rho_mean": 0.9, "is_weight_mean": 1.0}
    return telemetry_packet("learner", "r", metrics, labels={"algo": "impala"}, timestamp_ns=T0 + updates)


def _actor(name: str, env_steps: int, ret: float) -> pb.TelemetryPacket:
    metrics = {"env_steps": env_steps, "episode_return_mean": ret, "env_steps_per_s": 100.0}
    return telemetry_packet(f"actor/{name}", "r", metrics, timestamp_ns=T0 + env_steps)


def _replay(size: int) -> pb.TelemetryPacket:
    metrics = {"buffer_size": size, "deadlettered": 2.0}
    reasons = [LabelledMetric("deadlettered_by_reason", 2.0, {"reason": "MalformedRecordError"})]
    return telemetry_packet("replay/replay-0", "r", metrics, labelled=reasons, timestamp_ns=T0 + size)


def _envelope(packet: pb.TelemetryPacket) -> bytes:
    return encode_envelope(packet, source=packet.source, producer_id="t", sequence=0)


def _read(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)], every point (TensorBoard keeps scalars as float32: rounded to 6 places)."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tags_are_source_and_metric_and_the_step_is_env_frames():
    learner, replay = _learner(3, 96, 0.5), _replay(40)
    assert telemetry_scalars(learner) == {
        "learner/updates": 3.0,
        "learner/env_steps": 96.0,
        "learner/loss": 0.5,
        "learner/rho_mean": 0.9,
        "learner/is_weight_mean": 1.0,
    }  # the algo label every learner metric carries is not part of the tag
    assert telemetry_scalars(replay) == {
        "replay/replay-0/buffer_size": 40.0,
        "replay/replay-0/deadlettered": 2.0,
        "replay/replay-0/deadlettered_by_reason/MalformedRecordError": 2.0,
    }
    assert packet_metrics(replay) == {"buffer_size": 40.0, "deadlettered": 2.0}  # metrics.jsonl's row
    # The run's frames when known (`tamiyo train`), else the service's own count.
    assert (telemetry_step(learner), telemetry_step(learner, run_frames=500)) == (96, 500)
    assert telemetry_step(_actor("actor-0", 64, 0.1)) == 64
    assert telemetry_step(_actor("actor-0", 64, 0.1), run_frames=128) == 128
    assert (telemetry_step(replay), telemetry_step(replay, run_frames=128)) == (0, 128)


def test_a_services_sink_writes_the_envelopes_it_publishes_as_scalars_at_their_frames(tmp_path):
    sink = TensorBoardSink(tmp_path / "tb")
    for updates in (1, 2, 3):
        sink(_envelope(_learner(updates, 32 * updates, 1.0 / updates)))
    sink(b"\x00not-an-envelope")  # skipped
    sink.close()
    sink.close()  # again: nothing
    scalars = _read(tmp_path / "tb")
    assert set(scalars) == {f"learner/{m}" for m in ("updates", "env_steps", "loss", "rho_mean", "is_weight_mean")}
    assert scalars["learner/loss"] == [(32, 1.0), (64, 0.5), (96, 0.333333)]
    assert scalars["learner/updates"] == [(32, 1.0), (64, 2.0), (96, 3.0)]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.wall_time for e in acc.Scalars("learner/loss")] == [(T0 + u) / 1e9 for u in (1, 2, 3)]


def test_the_train_monitor_writes_every_source_at_the_runs_frames_next_to_metrics_jsonl(tmp_path):
    monitor = RunMonitor(KafkaSettings("unused:9092"), "t", tmp_path / "metrics.jsonl", tmp_path / "tb")
    with (tmp_path / "metrics.jsonl").open("w") as out:
        monitor._out = out
        monitor._tensorboard = TensorBoardSink(tmp_path / "tb")  # what `start` makes, without the consumer
        for packet in (
            _actor("actor-0", 100, 0.2),
            _actor("actor-1", 50, 0.4),
            _learner(1, 80, 2.0),
            _replay(12),
            _actor("actor-0", 300, 0.6),
        ):
            monitor._apply(packet)
        monitor._tensorboard.close()
    scalars = _read(tmp_path / "tb")
    assert scalars["actor/actor-0/episode_return_mean"] == [(100, 0.2), (350, 0.6)]
    assert scalars["actor/actor-1/episode_return_mean"] == [(150, 0.4)]
    assert scalars["learner/loss"] == [(150, 2.0)]  # the frames it had trained on: 80
    assert scalars["replay/replay-0/buffer_size"] == [(150, 12.0)]
    assert scalars["replay/replay-0/deadlettered_by_reason/MalformedRecordError"] == [(150, 2.0)]
    assert [s for s, _ in scalars["run/frames"]] == [100, 150, 350]
    assert [v for _, v in scalars["run/frames"]] == [100.0, 150.0, 350.0]
    assert [v for _, v in scalars["run/updates"]] == [0.0, 0.0, 1.0]
    assert {"run/frames_per_s", "run/episode_return_mean"} <= set(scalars)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value))

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value))


async def test_the_learner_and_actor_loops_hand_what_they_publish_on_telemetry_to_the_sink():
    from tamiyo.learner.service import LearnerService
    from tamiyo.producers.actor import Actor

    topics, got, producer = Topics.for_run("r"), [], _Producer()
    telemetry, ack = _envelope(_learner(1, 32, 0.5)), b"ack"
    records = [OutgoingRecord(topics.priorities, ack, b"learner"), OutgoingRecord(topics.telemetry, telemetry, b"l")]
    learner = SimpleNamespace(telemetry_sink=got.append, topics=topics)
    await LearnerService._publish(learner, producer, records)  # type: ignore[arg-type]
    assert got == [telemetry] and producer.sent == [(topics.priorities, ack), (topics.telemetry, telemetry)]

    value = _envelope(_actor("actor-0", 64, 0.1))
    core = SimpleNamespace(telemetry_value=lambda depth: value)
    sender = SimpleNamespace(producer=producer)
    actor = SimpleNamespace(core=core, outbox=[], telemetry_sink=got.append, sender=sender, topics=topics)
    await Actor._send_telemetry(actor)  # type: ignore[arg-type]
    assert got == [telemetry, value] and producer.sent[-1] == (topics.telemetry, value)


def test_without_a_directory_there_is_no_sink_and_without_tensorboard_one_line_says_what_to_install(monkeypatch):
    with tensorboard_sink(None) as sink:
        assert sink is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'tamiyo\[train\]'"), tensorboard_sink("unused"):
        pass

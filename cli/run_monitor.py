"""Follow a run's `telemetry` topic: progress for the operator, metrics.jsonl for the report, and the same
scalars as TensorBoard event files (`cli.tensorboard_sink`: the tags and their env-frame steps)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaConsumer

from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer
from tamiyo.cli.tensorboard_sink import TensorBoardSink, packet_metrics
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb


@dataclass
class RunProgress:
    started: float = field(default_factory=time.monotonic)
    learner: dict[str, float] = field(default_factory=dict)
    replay: dict[str, float] = field(default_factory=dict)
    actors: dict[str, dict[str, float]] = field(default_factory=dict)
    # Frames of an actor's earlier incarnations (a restarted actor counts its env steps from 0 again).
    actor_frames_before: dict[str, float] = field(default_factory=dict)
    packets: int = 0

    # Updates of the learner's earlier incarnations (a restarted learner counts from 0 or its checkpoint).
    learner_updates_before: float = 0.0
    learner_updates_last: float = 0.0

    @property
    def updates(self) -> int:
        return int(self.learner_updates_before + self.learner_updates_last)

    def learner_packet(self, metrics: dict[str, float]) -> None:
        if "updates" in metrics:
            if metrics["updates"] < self.learner_updates_last:  # a new incarnation of the learner
                self.learner_updates_before += self.learner_updates_last - metrics["updates"]
            self.learner_updates_last = metrics["updates"]
        self.learner = metrics

    @property
    def frames(self) -> int:
        current = sum(a.get("env_steps", 0) for a in self.actors.values())
        return int(current + sum(self.actor_frames_before.values()))

    def actor_packet(self, source: str, metrics: dict[str, float]) -> None:
        previous = self.actors.get(source, {}).get("env_steps", 0.0)
        if metrics.get("env_steps", 0.0) < previous:  # a new incarnation of this actor
            self.actor_frames_before[source] = self.actor_frames_before.get(source, 0.0) + previous
        self.actors[source] = metrics

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def recent_return(self) -> float | None:
        values = [a["episode_return_mean"] for a in self.actors.values() if "episode_return_mean" in a]
        return sum(values) / len(values) if values else None

    def run_scalars(self) -> dict[str, float]:
        """The run as a whole (TensorBoard's ``run/`` tags): what the progress line shows."""
        scalars = {"run/frames": float(self.frames), "run/updates": float(self.updates)}
        scalars["run/frames_per_s"] = self.frames_per_s  # since the monitor started
        if self.recent_return is not None:
            scalars["run/episode_return_mean"] = self.recent_return
        return scalars


class RunMonitor:
    """Reads every telemetry packet of the run (from the start of the topic) and appends it to a JSONL file
    (and, given ``tensorboard_dir``, writes its scalars there)."""

    def __init__(
        self, settings: KafkaSettings, topic: str, metrics_path: Path, tensorboard_dir: Path | None = None
    ) -> None:
        self.settings = settings.with_client_id("tamiyo-train-monitor")
        self.topic = topic
        self.metrics_path = metrics_path
        self.tensorboard_dir = tensorboard_dir
        self.progress = RunProgress()
        self._consumer: AIOKafkaConsumer | None = None
        self._out: IO[str] | None = None
        self._tensorboard: TensorBoardSink | None = None

    async def start(self) -> None:
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        self._consumer = consumer
        if not await assign_from_beginning(consumer, self.topic):
            raise RuntimeError(f"topic {self.topic} does not exist")
        self._out = self.metrics_path.open("a")
        if self.tensorboard_dir is not None:  # imports torch + tensorboard
            self._tensorboard = TensorBoardSink(self.tensorboard_dir)

    async def poll(self, timeout_ms: int = 200) -> None:
        assert self._consumer is not None and self._out is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            for rec in records:
                try:
                    packet = decode_envelope(rec.value, expect=pb.TelemetryPacket).payload
                except LeylineError:
                    continue
                self._apply(packet)
        self._out.flush()

    async def drain(self, quiet_ms: int = 500, limit_s: float = 5.0) -> None:
        """Read until the topic has been quiet for `quiet_ms` (bounded by `limit_s`)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.progress.packets
            await self.poll(timeout_ms=quiet_ms)
            if self.progress.packets == before:
                return

    def _apply(self, packet: pb.TelemetryPacket) -> None:
        metrics = packet_metrics(packet)
        self.progress.packets += 1
        if packet.source == "learner":
            self.progress.learner_packet(metrics)
        elif packet.source.startswith("replay/"):
            self.progress.replay = metrics
        elif packet.source.startswith("actor/"):
            self.progress.actor_packet(packet.source, metrics)
        if self._tensorboard is not None:
            frames = self.progress.frames
            self._tensorboard.write(packet, run_frames=frames)
            if packet.source.startswith("actor/"):  # the run's frames moved on
                self._tensorboard.write_scalars(self.progress.run_scalars(), frames, packet.timestamp_ns)
        line = {
            "t": round(self.progress.elapsed_s, 3),
            "timestamp_ns": packet.timestamp_ns,
            "source": packet.source,
            "metrics": metrics,
            "events": [e.name for e in packet.events],
        }
        assert self._out is not None
        self._out.write(json.dumps(line) + "\n")

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._out is not None:
            self._out.close()
        if self._tensorboard is not None:
            self._tensorboard.close()

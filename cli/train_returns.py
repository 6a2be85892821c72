"""The learning proof's measurement: a windowed mean of episode returns, read from the `trajectories` topic.

`EpisodeReturns` is the accounting (no Kafka); `ReturnTracker` reads the topic from its beginning into it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from tamiyo.bus.clients import KafkaSettings, make_consumer
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb


class EpisodeReturns:
    """The mean return of the last ``window`` finished episodes, against the env frames stepped so far.

    Every finished episode travels in the `Trajectory` of the unroll it ended in
    (``episode_returns``).  Episodes are taken in the order they are added; the env-step count
    credited to an episode is, summed over all actors, the frames of every collect each actor has
    published up to and including the collect that episode ended in (a collect = ``envs_per_actor``
    unrolls), so it never undercounts what the actors had stepped when the episode ended.  Frames
    the replay later drops as stale are counted too: they were stepped.
    """

    def __init__(self, window: int, target: float | None, envs_per_actor: int,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.window = window
        self.target = target
        self.envs_per_actor = max(1, envs_per_actor)
        self.returns: list[float] = []
        self.curve: list[tuple[int, float]] = []  # (frames, windowed mean) at every episode once the window is full
        self.actor_frames: dict[str, int] = {}
        self.reached_at: int | None = None
        self.reached_after_s: float | None = None
        self.best: float | None = None
        self._clock = clock
        self.started = clock()

    def restart_clock(self) -> None:
        """``reached_after_s`` counts from now (when the reading starts)."""
        self.started = self._clock()

    @property
    def frames(self) -> int:
        return sum(self.actor_frames.values())

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    def add(self, traj: pb.Trajectory) -> None:
        n = self.envs_per_actor
        collect_end = (int(traj.sequence) // n + 1) * n * int(traj.length)
        self.actor_frames[traj.actor_id] = max(self.actor_frames.get(traj.actor_id, 0), collect_end)
        for ret in np.frombuffer(traj.episode_returns, dtype="<f4").tolist():
            self.returns.append(float(ret))
            if len(self.returns) < self.window:
                continue
            mean = float(np.mean(self.returns[-self.window :]))
            frames = self.frames
            self.curve.append((frames, mean))
            self.best = mean if self.best is None else max(self.best, mean)
            if self.reached_at is None and self.target is not None and mean >= self.target:
                self.reached_at = frames
                self.reached_after_s = self._clock() - self.started

    def summary(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "target": self.target,
            "reached_at_frames": self.reached_at,
            "reached_after_s": None if self.reached_after_s is None else round(self.reached_after_s, 1),
            "episodes": len(self.returns),
            "frames_published": self.frames,
            "best_window_mean": self.best,
            "final_window_mean": self.curve[-1][1] if self.curve else None,
        }


class ReturnTracker:
    """Reads a run's `trajectories` topic from the beginning, in record-timestamp order, into ``returns``."""

    def __init__(self, settings: KafkaSettings, topic: str, returns: EpisodeReturns) -> None:
        self.settings = settings.with_client_id("tamiyo-train-returns")
        self.topic = topic
        self.returns = returns
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.returns.restart_clock()
        consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        self._consumer = consumer
        tp = TopicPartition(self.topic, 0)  # `tamiyo train` creates one partition per topic
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)

    async def poll(self, timeout_ms: int = 0) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=2000)
        records = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp)
        for rec in records:
            try:
                traj = decode_envelope(rec.value, expect=pb.Trajectory, validate=False).payload
            except LeylineError:
                continue  # the replay dead-letters it; it holds no episode we could trust
            self.returns.add(traj)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

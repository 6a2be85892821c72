"""The actor's pure core: N environments, the behaviour policy, unrolls encoded as `Trajectory` envelopes.

No Kafka here (`producers/actor.py` is the loop).  The behaviour policy is the learned network (a
`SwappablePolicy` that a `SnapshotAcceptor` hot-swaps from the policy topic) or a baseline controller.

Delivery identity: each unroll becomes one envelope with ``producer_id = <actor id>:<incarnation>`` and a
strictly increasing sequence, which is the replay consumer's de-duplication key (a restarted actor gets
a new incarnation, so its sequence can start again at 0).  Telemetry has its own sequence space so
trajectory sequences stay contiguous.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field

import numpy as np

from tamiyo.contracts.codec import EnvelopeEncoder
from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.signing import TrustedKeys
from tamiyo.contracts.telemetry import telemetry_packet
from tamiyo.contracts.unroll import Unroll
from tamiyo.policy.swappable import SwappablePolicy
from tamiyo.policy.verification import SnapshotAcceptor, SnapshotVerifier
from tamiyo.producers.actor_config import ActorConfig
from tamiyo.producers.controller_policy import ControllerPolicy
from tamiyo.producers.controllers import make_controller
from tamiyo.producers.envs import make_env, make_vec_env
from tamiyo.producers.outbox import OVERFLOW_POLICIES
from tamiyo.producers.vec_env import SyncVecEnv, VecEnv
from tamiyo.producers.vec_rollout import VecRolloutCollector


@dataclass
class ActorStats:
    unrolls_made: int = 0
    unrolls_published: int = 0
    unrolls_dropped: int = 0
    env_steps: int = 0
    episodes: int = 0
    publish_errors: int = 0
    backpressure_wait_s: float = 0.0  # waiting for the replay to catch up (ActorConfig.max_backlog)
    recent_returns: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    publish_latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=500))


class ActorCore:
    def __init__(self, config: ActorConfig, trusted: TrustedKeys | None) -> None:
        """``trusted``: public keys that verify policy snapshots (the learned controller only; baselines need none)."""
        if config.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}")
        self.config = config
        self.stats = ActorStats()
        incarnation = f"{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
        source = f"actor/{config.actor_id}"
        self.encoder = EnvelopeEncoder(
            source=source, producer_id=f"{config.actor_id}:{incarnation}", correlation_id=config.run_id
        )
        self.telemetry_encoder = EnvelopeEncoder(
            source=source, producer_id=f"{config.actor_id}:{incarnation}:telemetry"
        )
        seeds = [config.seed * 1000 + i for i in range(config.num_envs)]
        self.schema = env_schema(config.env)
        self.acceptor: SnapshotAcceptor | None = None
        self.policy: SwappablePolicy | ControllerPolicy
        if config.controller == "policy":
            if trusted is None:
                raise ValueError("the learned controller needs trusted public keys to verify policy snapshots")
            self.policy = SwappablePolicy(device=config.device)
            verifier = SnapshotVerifier(trusted, config.policy_id, self.schema)
            self.acceptor = SnapshotAcceptor(self.policy, verifier, config.device)
            self.vec_env: VecEnv = make_vec_env(config.env, seeds)
        else:
            # Baselines read each env's plain state (env.info()): scalar envs behind the vector API.
            envs = [make_env(config.env, seed=s) for s in seeds]
            self.policy = ControllerPolicy(envs, [make_controller(config.controller, seed=s) for s in seeds])
            self.vec_env = SyncVecEnv(envs)
        self.collector = VecRolloutCollector(
            self.vec_env,
            self.policy,
            config.unroll_length,
            seed=config.seed * 1000,
            actor_id=config.actor_id,
            env_id=config.env,
        )
        self._last_rate = (time.monotonic(), 0)  # (when, env steps) at the last telemetry

    @property
    def policy_ready(self) -> bool:
        """True once there is a policy to act with (a baseline always; the learned one after a snapshot)."""
        return not isinstance(self.policy, SwappablePolicy) or self.policy.wait_ready(0)

    def collect(self) -> list[Unroll]:
        """One unroll per env (blocking: run it off the event loop)."""
        return self.collector.collect()

    def record_episodes(self) -> int:
        """Take note of the episodes finished since the last call; returns the env steps taken since."""
        eps = self.collector.take_episodes()  # taken, not kept: an actor runs for days
        self.stats.recent_returns.extend(e.ret for e in eps)
        self.stats.episodes += len(eps)
        new_steps = self.collector.env_steps - self.stats.env_steps
        self.stats.env_steps = self.collector.env_steps
        return new_steps

    def encode(self, unroll: Unroll) -> bytes:
        """The unroll as a `Trajectory` envelope; from here on it counts as made."""
        value = self.encoder.encode(unroll_to_proto(unroll, self.schema.name))
        self.stats.unrolls_made += 1
        return value

    def published(self, sequence: int, latency_ms: float) -> None:
        self.stats.publish_latency_ms.append(latency_ms)
        self.stats.unrolls_published += 1

    def telemetry_metrics(self, queue_depth: int) -> dict[str, float]:
        s = self.stats
        now = time.monotonic()
        last_t, last_steps = self._last_rate
        rate = (s.env_steps - last_steps) / (now - last_t) if now > last_t else 0.0
        self._last_rate = (now, s.env_steps)
        metrics = {
            "env_steps": float(s.env_steps),
            "process_cpu_s": time.process_time(),  # all threads: CPU cost per frame = this / env_steps
            "backpressure_wait_s": s.backpressure_wait_s,
            "env_steps_per_s": rate,
            "episodes": float(s.episodes),
            "unrolls_published": float(s.unrolls_published),
            "unrolls_dropped": float(s.unrolls_dropped),
            "publish_errors": float(s.publish_errors),
            "queue_depth": float(queue_depth),
            "policy_version": float(self.policy.version),
        }
        if s.recent_returns:
            metrics["episode_return_mean"] = float(np.mean(s.recent_returns))
        if s.publish_latency_ms:
            metrics["publish_latency_ms_p50"] = float(np.percentile(s.publish_latency_ms, 50))
        if self.acceptor is not None:
            metrics["snapshots_loaded"] = float(self.acceptor.stats.loaded)
            metrics["snapshots_rejected"] = float(sum(self.acceptor.stats.rejected.values()))
        return metrics

    def telemetry_value(self, queue_depth: int) -> bytes:
        packet = telemetry_packet(
            f"actor/{self.config.actor_id}",
            self.config.run_id,
            self.telemetry_metrics(queue_depth),
            healthy=self.stats.publish_errors == 0,
        )
        return self.telemetry_encoder.encode(packet)

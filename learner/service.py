"""The learner service: `batches` in; `priorities`, `telemetry` and signed `policy` snapshots out.

Per batch: decode and validate every trajectory against the env's graph
schema (a bad batch is dead-lettered whole), run one IMPALA step (V-trace,
prioritized-replay importance weights) or one PPO update (GAE, minibatch
epochs), acknowledge the batch with a `PriorityUpdate` (new |TD| priorities
for IMPALA; an empty ack for PPO, which also tells the replay the current
policy version), and commit the batch's offset.  Every ``snapshot_every``
updates the network is published as a signed safetensors `PolicySnapshot`
to the compacted `policy` topic — never when the last step was refused by
the circuit breaker or any weight is non-finite.  Checkpoints (weights,
optimizer, counters; no pickle) go to disk so ``resume`` continues exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from aiokafka.errors import KafkaError
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.deadletter import DeadLetterSink
from tamiyo.bus.observability import context_from_headers, context_from_traceparent, instruments, tracer
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, decode_payload_bytes, parse_message
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import policy_key
from tamiyo.contracts.telemetry import Event, telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.model import ModelConfig, TamiyoGNN
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.learner.snapshot import load_snapshot
from tamiyo.learner.snapshot_signing import signed_snapshot

log = logging.getLogger(__name__)
ALGOS = ("impala", "ppo")
UPDATE_SKIPPED = Event("update_skipped", "non-finite loss or gradients, or circuit breaker open", pb.SEVERITY_WARNING)


@dataclass
class LearnerConfig:
    algo: str = "impala"
    env: str = "host-sim"
    policy_id: str = "tamiyo"
    run_id: str = ""
    snapshot_every: int = 1
    telemetry_every: int = 1
    checkpoint_dir: str | None = None
    checkpoint_every: int = 50
    resume: bool = False
    init_from: str | None = None  # a policy.safetensors (with policy.json beside it)
    max_updates: int | None = None
    max_seconds: float | None = None
    # Stop after this long without a batch (once one arrived): re-running a recorded stream offline.
    stop_when_idle_s: float | None = None
    group_id: str | None = None
    device: str = "cpu"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    impala: ImpalaConfig = field(default_factory=ImpalaConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)


class LearnerService:
    def __init__(self, config: LearnerConfig, settings: KafkaSettings, topics: Topics) -> None:
        if config.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}")
        from tamiyo.producers.envs import make_env

        self.config = config
        self.settings = settings.with_client_id("tamiyo-learner")
        self.topics = topics
        self.schema = make_env(config.env).schema
        self.key = policy_key()
        self.encoder = EnvelopeEncoder(source="learner", correlation_id=config.run_id)
        self.group_id = config.group_id or f"tamiyo-learner-{config.run_id or 'default'}"
        torch.manual_seed(config.seed)
        counters: dict = {}
        ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        if config.resume and ckpt is not None and ckpt.exists():
            model, counters = load_checkpoint(ckpt, config.device)
            log.info("resuming from %s at update %s", ckpt, counters.get("updates"))
        elif config.init_from:
            model = _load_policy_file(config.init_from, config.device)
            log.info("initialised from %s", config.init_from)
        else:
            model = TamiyoGNN(self.schema, config.model)
        if model.schema != self.schema:
            raise ValueError("the initial policy was built for another graph schema")
        self.model = model.to(config.device)
        if config.algo == "impala":
            self.learner: ImpalaLearner | PPOLearner = ImpalaLearner(self.model, config.impala, config.device)
        else:
            self.learner = PPOLearner(self.model, config.ppo, config.device, seed=config.seed)
        if counters:
            restore_optimizer(ckpt, self.learner.optimizer, config.device)  # type: ignore[arg-type]
            self._set_version(int(counters["version"]))
        self.updates = int(counters.get("updates", 0))
        self.env_steps = int(counters.get("env_steps", 0))
        self.last_snapshot_version = -1
        self.rejected_batches = 0
        self.last_metrics: dict[str, float] = {}
        self._recent_rates: deque[tuple[float, int]] = deque(maxlen=50)

    # ------------------------------------------------------------ versions

    @property
    def version(self) -> int:
        lr = self.learner
        return lr.version if isinstance(lr, ImpalaLearner) else lr.updates

    def _set_version(self, v: int) -> None:
        if isinstance(self.learner, ImpalaLearner):
            self.learner.version = v
        else:
            self.learner.updates = v

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, float]:
        stop = stop or asyncio.Event()
        cfg = self.config
        self.producer = make_producer(self.settings)
        self.consumer = make_consumer(
            self.settings,
            self.topics.batches,
            group_id=self.group_id,
            max_poll_records=1,
            session_timeout_ms=30_000,
        )
        await self.producer.start()
        await self.consumer.start()
        self.deadletter = DeadLetterSink(self.producer, self.topics.deadletter, "learner")
        started = last_batch = time.monotonic()
        seen_batch = False
        try:
            await self._publish_snapshot()  # actors start acting with the initial policy
            await self._announce_version()
            while not stop.is_set():
                if cfg.max_updates is not None and self.updates >= cfg.max_updates:
                    break
                if cfg.max_seconds is not None and time.monotonic() - started >= cfg.max_seconds:
                    break
                batch = await self.consumer.getmany(timeout_ms=200, max_records=1)
                if batch:
                    seen_batch, last_batch = True, time.monotonic()
                elif (
                    seen_batch
                    and cfg.stop_when_idle_s is not None
                    and time.monotonic() - last_batch > cfg.stop_when_idle_s
                ):
                    log.info("no batch for %.0fs: stopping", cfg.stop_when_idle_s)
                    break
                for records in batch.values():
                    for rec in records:
                        await self._process(rec)
                        await self.consumer.commit()
        finally:
            with contextlib.suppress(KafkaError, OSError):
                if self.updates and self.version != self.last_snapshot_version:
                    await self._publish_snapshot()
                self._checkpoint()
            await self.consumer.stop()
            await self.producer.stop()
        return {
            "updates": float(self.updates),
            "version": float(self.version),
            "env_steps": float(self.env_steps),
        }

    async def _process(self, rec) -> None:
        # Child of the replay's publish_batch span (the batch record carries its trace context).
        with tracer().start_as_current_span(
            "learner.update", context=context_from_headers(rec.headers), kind=SpanKind.CONSUMER
        ) as span:
            await self._process_traced(rec, span)

    async def _process_traced(self, rec, span: Span) -> None:
        inst = instruments()
        inst.records_in.add(1, {"topic": rec.topic})
        t0 = time.perf_counter()
        try:
            sampled = decode_envelope(rec.value, expect=pb.SampledBatch).payload
            unrolls = [self._decode_item(item) for item in sampled.items]
            if not unrolls:
                raise InvalidFieldError("empty batch")
        except (LeylineError, ValueError) as err:
            span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            self.rejected_batches += 1
            await self.deadletter.send(rec, err)
            return
        inst.decode_ms.record((time.perf_counter() - t0) * 1e3, {"payload_type": "SampledBatch"})
        if sampled.created_at_ns:
            inst.batch_latency_ms.record(max(0.0, (time.time_ns() - sampled.created_at_ns) / 1e6))
        span.set_attribute("tamiyo.batch_id", int(sampled.batch_id))
        weights = np.asarray([it.weight for it in sampled.items], dtype=np.float32)
        t0 = time.perf_counter()
        # The step runs off the event loop so Kafka heartbeats keep flowing during long updates.
        metrics, priorities = await asyncio.to_thread(self._train, unrolls, weights)
        step_s = time.perf_counter() - t0
        steps = sum(u.length for u in unrolls)
        stepped = metrics.get("skipped", 0.0) == 0.0
        if stepped:
            self.updates += 1
            self.env_steps += steps
        self._recent_rates.append((time.monotonic(), steps))
        update = pb.PriorityUpdate(batch_id=sampled.batch_id, learner_step=self.version)
        if len(priorities) == len(sampled.items):
            update.indices.extend(it.index for it in sampled.items)
            update.keys.extend(it.key for it in sampled.items)
            update.priorities.extend(float(p) for p in priorities)
        await self.producer.send_and_wait(self.topics.priorities, self.encoder.encode(update), key=b"learner")
        inst.records_out.add(1, {"topic": self.topics.priorities})
        self._trace_items(sampled.items, unrolls)
        for name in ("policy_loss", "baseline_loss", "value_loss", "entropy_loss", "loss"):
            if name in metrics and np.isfinite(metrics[name]):
                inst.learner_loss.set(metrics[name], {"name": name, "algo": self.config.algo})
        metrics.update(
            {
                "updates": float(self.updates),
                "env_steps": float(self.env_steps),
                "step_ms": step_s * 1e3,
                "batch_unrolls": float(len(unrolls)),
                "buffer_size": float(sampled.buffer_size),
                "is_weight_mean": float(weights.mean()),
                "samples_per_s": self._samples_per_s(),
                "policy_lag_mean": float(
                    np.mean([self.version - int(stepped) - u.policy_versions.mean() for u in unrolls])
                ),
                "episode_return_mean": _mean_episode_return(unrolls),
                "rejected_batches": float(self.rejected_batches),
                "breaker_failures": float(self.learner.breaker.total_failures),
            }
        )
        self.last_metrics = metrics
        if stepped and self.updates % self.config.snapshot_every == 0:
            await self._publish_snapshot()
        if self.updates % self.config.telemetry_every == 0 or not stepped:
            with contextlib.suppress(KafkaError):
                await self._send_telemetry(metrics)
        if stepped and self.config.checkpoint_dir and self.updates % self.config.checkpoint_every == 0:
            await asyncio.to_thread(self._checkpoint)

    def _trace_items(self, items, unrolls: list[Unroll]) -> None:
        """The last hop of each trajectory's trace: `learner.item`, with the policy lag it was trained at."""
        for item, unroll in zip(items, unrolls, strict=True):
            lag = float(self.version - unroll.policy_versions.mean())
            instruments().policy_lag.record(lag, {"algo": self.config.algo})
            with tracer().start_as_current_span(
                "learner.item", context=context_from_traceparent(item.trace_parent)
            ) as span:
                span.set_attribute("tamiyo.policy_lag", lag)

    def _decode_item(self, item: pb.SampledItem) -> Unroll:
        raw = decode_payload_bytes(item.trajectory, item.encoding, item.uncompressed_size)
        unroll = unroll_from_proto(parse_message(pb.Trajectory, raw))
        unroll.validate(self.schema)  # shapes, masks and node counts of *this* env
        return unroll

    def _train(self, unrolls: list[Unroll], weights: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        if isinstance(self.learner, ImpalaLearner):
            result = self.learner.step(unrolls, importance_weights=weights)
            return dict(result.metrics), result.priorities
        return dict(self.learner.update(unrolls)), np.zeros(0)

    def _samples_per_s(self) -> float:
        if len(self._recent_rates) < 2:
            return 0.0
        span = self._recent_rates[-1][0] - self._recent_rates[0][0]
        return sum(s for _, s in list(self._recent_rates)[1:]) / span if span > 0 else 0.0

    # ------------------------------------------------------------ outputs

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    async def _publish_snapshot(self) -> bool:
        if not self.weights_finite():
            log.error("non-finite weights: snapshot %d withheld", self.version)
            return False
        snap = signed_snapshot(
            self.model,
            version=self.version,
            policy_id=self.config.policy_id,
            key=self.key,
            algo=self.config.algo,
            learner_step=self.updates,
        )
        await self.producer.send_and_wait(
            self.topics.policy, self.encoder.encode(snap), key=self.config.policy_id.encode()
        )
        self.last_snapshot_version = self.version
        return True

    async def _announce_version(self) -> None:
        """An empty ack: tells the replay which policy version is current (staleness limit)."""
        update = pb.PriorityUpdate(batch_id=0, learner_step=self.version)
        await self.producer.send_and_wait(self.topics.priorities, self.encoder.encode(update), key=b"learner")

    async def _send_telemetry(self, metrics: dict[str, float]) -> None:
        healthy = metrics.get("skipped", 0.0) == 0.0
        packet = telemetry_packet(
            "learner",
            self.config.run_id,
            metrics,
            healthy=healthy,
            labels={"algo": self.config.algo},
            events=() if healthy else (UPDATE_SKIPPED,),
        )
        await self.producer.send(self.topics.telemetry, self.encoder.encode(packet), key=b"learner")

    def _checkpoint(self) -> None:
        if not self.config.checkpoint_dir or not self.weights_finite():
            return
        counters = {"updates": self.updates, "version": self.version, "env_steps": self.env_steps}
        save_checkpoint(self.config.checkpoint_dir, self.model, self.learner.optimizer, counters)


def _mean_episode_return(unrolls: list[Unroll]) -> float:
    returns = np.concatenate([u.episode_returns for u in unrolls])
    return float(returns.mean()) if returns.size else float("nan")


def _load_policy_file(path: str, device: str) -> TamiyoGNN:
    weights = Path(path)
    if weights.is_dir():
        weights = weights / "policy.safetensors"
    config = weights.with_suffix(".json")
    model, _ = load_snapshot(weights.read_bytes(), config.read_text(), device)
    return model

"""The serving consumer: `SystemStatePacket`s in, greedy `AdaptationCommand`s out.

```
 state topic ──▶ decode + validate ──▶ TamiyoGNN (greedy, masked) ──▶ AdaptationCommand ──▶ commands topic
 (any producer)   bad ─▶ deadletter      ▲ latest VERIFIED snapshot                        key = training_run_id
                                         └── PolicySubscriber (compacted policy topic, --policy-id)
```

A state packet must carry the observation graph (`graph`, a one-graph
`GraphState` of the serving env's schema) and the joint action mask
(`action_mask`, ``np.packbits`` of M booleans) — what `HostEnv.state_packet()`
builds.  Everything that can be wrong with a record (not an envelope, another
payload type, a wrong schema version, non-finite values, a graph of another
schema, a mask of the wrong length or with no valid action) sends it to
`deadletter` with the reason; the service keeps serving.

The pure part — `Decider.decide(values)` — is what `bench/serve.py` times:
decode → GNN inference → command encode.  All packets of one fetch go through
one forward pass; each decision's latency is the whole batch's wall time
(an upper bound for every decision in it).  Offsets are committed after the
commands are acknowledged (at-least-once: a restart may answer a state twice,
with the same ``command_id``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from aiokafka.errors import KafkaError
from opentelemetry import metrics

from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.deadletter import DeadLetterSink
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope, validate_payload
from tamiyo.contracts.errors import InvalidFieldError, LeylineError
from tamiyo.contracts.graph import GraphSchema, PackedGraphs
from tamiyo.contracts.packing import graphs_from_proto, unpack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import policy_key
from tamiyo.contracts.telemetry import LabelledMetric, telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.learner.model import TamiyoGNN
from tamiyo.producers.behaviour import SwappablePolicy
from tamiyo.producers.commands import command_from_action
from tamiyo.producers.policy_subscriber import PolicySubscriber

log = logging.getLogger(__name__)

DEFAULT_POLICY_ID = "tamiyo-serving"


class GreedyPolicy(SwappablePolicy):
    """`SwappablePolicy` that acts deterministically: the most probable valid action of every head."""

    def __init__(self, model: TamiyoGNN | None = None, version: int = -1, device: str = "cpu") -> None:
        super().__init__(model, version, device, deterministic=True)


@dataclass
class Decision:
    """One state packet's outcome: a command (``value`` to publish under ``key``) or an error."""

    key: bytes = b""
    value: bytes = b""
    command: pb.AdaptationCommand | None = None
    error: BaseException | None = None


@dataclass
class _Parsed:
    run_id: str
    epoch: int
    graph: PackedGraphs
    mask: np.ndarray


class Decider:
    """Decode → validate → one batched greedy forward pass → encode.  No Kafka here."""

    def __init__(
        self,
        policy: SwappablePolicy,
        schema: GraphSchema,
        blueprint_ids: tuple[str, ...] | list[str],
        encoder: EnvelopeEncoder | None = None,
    ) -> None:
        self.policy = policy
        self.schema = schema
        self.blueprint_ids = tuple(blueprint_ids)
        self.joint = schema.joint_action_count
        _, self._slots, self._blueprints = schema.head_sizes
        self.encoder = encoder or EnvelopeEncoder(source="serve")

    def parse(self, value: bytes) -> _Parsed:
        """Decode one record value into (run id, epoch, graph, mask), or raise why it cannot be served."""
        # Validate without the graph first, then decode the graph once (the codec's own validator
        # would decode it a second time).
        pkt = decode_envelope(value, expect=pb.SystemStatePacket, validate=False).payload
        if not pkt.HasField("graph"):
            raise InvalidFieldError("state packet carries no graph")
        if pkt.graph.schema_name and pkt.graph.schema_name != self.schema.name:
            raise InvalidFieldError(f"graph of schema {pkt.graph.schema_name!r}, serving {self.schema.name!r}")
        graph = graphs_from_proto(pkt.graph)
        pkt.ClearField("graph")
        validate_payload(pkt)
        if graph.num_graphs != 1:
            raise InvalidFieldError(f"state packet holds {graph.num_graphs} graphs, expected 1")
        try:
            graph.validate(self.schema)
        except ValueError as err:
            raise InvalidFieldError(f"graph does not match schema {self.schema.name!r}: {err}") from err
        mask = unpack_mask(pkt.action_mask, self.joint)
        if not mask.any():
            raise InvalidFieldError("action mask allows no action")
        if not pkt.training_run_id:
            raise InvalidFieldError("state packet has no training_run_id")
        return _Parsed(pkt.training_run_id, int(pkt.current_epoch), graph, mask)

    def decide(self, values: list[bytes]) -> list[Decision]:
        out = [Decision() for _ in values]
        parsed: list[tuple[int, _Parsed]] = []
        for i, value in enumerate(values):
            try:
                parsed.append((i, self.parse(value)))
            except (LeylineError, ValueError, TypeError) as err:
                out[i].error = err
        if not parsed:
            return out
        graphs = parsed[0][1].graph if len(parsed) == 1 else PackedGraphs.concat([p.graph for _, p in parsed])
        masks = np.stack([p.mask for _, p in parsed])
        try:
            step = self.policy(graphs, masks)
        except (RuntimeError, ValueError, IndexError) as err:
            if len(parsed) == 1:
                out[parsed[0][0]].error = err
                return out
            # Isolate the culprit: decide one by one.
            for i, value in ((i, values[i]) for i, _ in parsed):
                out[i] = self.decide([value])[0]
            return out
        now = time.time_ns()
        for row, (i, p) in enumerate(parsed):
            action = step.actions[row]
            if not p.mask[(int(action[0]) * self._slots + int(action[1])) * self._blueprints + int(action[2])]:
                out[i].error = InvalidFieldError(f"policy chose masked action {action.tolist()}")  # never expected
                continue
            cmd = command_from_action(
                action,
                run_id=p.run_id,
                epoch=p.epoch,
                blueprint_ids=self.blueprint_ids,
                log_prob=float(step.log_probs[row]),
                policy_version=step.version,
                issued_at_ns=now,
            )
            out[i] = Decision(key=p.run_id.encode(), value=self.encoder.encode(cmd), command=cmd)
        return out


@dataclass
class ServeConfig:
    env: str = "host-sim"  # the env whose graph schema and blueprint catalog the packets use
    policy_id: str = DEFAULT_POLICY_ID
    serve_id: str = "serve-0"
    group_id: str | None = None  # default: tamiyo-serve-<run>
    run_id: str = ""
    device: str = "cpu"
    torch_threads: int = 1  # small graphs: one thread is fastest (and fair on shared machines)
    max_batch: int = 64
    telemetry_every_s: float = 5.0
    wait_for_policy_s: float = 120.0
    commit_every_s: float = 0.5
    max_seconds: float | None = None
    max_decisions: int | None = None
    health_file: str | None = None  # touched every loop: a liveness probe for containers


@dataclass
class ServeStats:
    decisions: int = 0
    dead_lettered: int = 0
    batches: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    publish_errors: int = 0


def _host_blueprint_ids(env_name: str) -> tuple[GraphSchema, tuple[str, ...]]:
    from tamiyo.producers.envs import HOST_ENVS, make_env

    if env_name not in HOST_ENVS:
        raise ValueError(f"serving answers host envs {HOST_ENVS} (AdaptationCommands), not {env_name!r}")
    env = make_env(env_name)
    return env.schema, tuple(b.blueprint_id for b in env.blueprints)  # type: ignore[attr-defined]


class ServeService:
    def __init__(self, config: ServeConfig, settings: KafkaSettings, topics: Topics) -> None:
        self.config = config
        self.settings = settings.with_client_id(f"tamiyo-{config.serve_id}")
        self.topics = topics
        self.stats = ServeStats()
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self.schema, blueprint_ids = _host_blueprint_ids(config.env)
        self.policy = GreedyPolicy(device=config.device)
        self.subscriber = PolicySubscriber(
            settings,
            topics.policy,
            self.policy,
            key=policy_key(),
            policy_id=config.policy_id,
            schema=self.schema,
            device=config.device,
        )
        incarnation = f"{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
        self.decider = Decider(
            self.policy,
            self.schema,
            blueprint_ids,
            EnvelopeEncoder(source=f"serve/{config.serve_id}", producer_id=f"{config.serve_id}:{incarnation}"),
        )
        self.telemetry_encoder = EnvelopeEncoder(
            source=f"serve/{config.serve_id}", producer_id=f"{config.serve_id}:{incarnation}:telemetry"
        )
        self.ready = asyncio.Event()  # set once a policy is loaded and the state topic is subscribed
        # OpenTelemetry too (a no-op unless `tamiyo serve` set a meter provider from OTEL_* variables).
        meter = metrics.get_meter("tamiyo")
        self._otel_latency = meter.create_histogram(
            "tamiyo.serve.decision.duration", unit="ms", description="state packet decode -> GNN -> command encode"
        )
        self._otel_decisions = meter.create_counter("tamiyo.serve.decisions", unit="{command}")

    async def run(self, stop: asyncio.Event | None = None) -> ServeStats:
        stop = stop or asyncio.Event()
        cfg = self.config
        group = cfg.group_id or f"tamiyo-serve-{cfg.run_id or 'default'}"
        self._producer = make_producer(self.settings, linger_ms=0)
        consumer = make_consumer(self.settings, self.topics.state, group_id=group, fetch_max_wait_ms=100)
        sink = DeadLetterSink(self._producer, self.topics.deadletter, f"serve/{cfg.serve_id}")
        self._sink = sink
        await self._producer.start()
        tasks = [asyncio.create_task(self.subscriber.run(stop), name="policy-subscriber")]
        try:
            if not await self._wait_for_policy(stop):
                return self.stats
            await consumer.start()
            tasks.append(asyncio.create_task(self._telemetry_loop(stop), name="telemetry"))
            started = last_commit = time.monotonic()
            dirty = False
            self.ready.set()
            while not stop.is_set():
                if cfg.max_seconds is not None and time.monotonic() - started >= cfg.max_seconds:
                    break
                if cfg.max_decisions is not None and self.stats.decisions >= cfg.max_decisions:
                    break
                self._touch_health()
                fetched = await consumer.getmany(timeout_ms=200, max_records=cfg.max_batch)
                records = [r for part in fetched.values() for r in part]
                if records:
                    await self._serve(records, sink)
                    dirty = True
                if dirty and time.monotonic() - last_commit >= cfg.commit_every_s:
                    await consumer.commit()
                    dirty, last_commit = False, time.monotonic()
            if dirty:
                with contextlib.suppress(KafkaError):
                    await consumer.commit()
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=10)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._send_telemetry(), timeout=5)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(consumer.stop(), timeout=10)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._producer.stop(), timeout=10)
        return self.stats

    async def _serve(self, records: list, sink: DeadLetterSink) -> None:
        t0 = time.perf_counter()
        decisions = self.decider.decide([r.value for r in records])
        futures = []
        for rec, d in zip(records, decisions, strict=True):
            if d.error is not None:
                self.stats.dead_lettered += 1
                await sink.send(rec, d.error)
            else:
                futures.append(await self._producer.send(self.topics.commands, d.value, key=d.key))
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        n_ok = len(futures)
        self.stats.latency_ms.extend([elapsed_ms] * n_ok)
        if n_ok:
            attrs = {"service": "serve", "policy_version": self.policy.version}
            for _ in range(n_ok):  # one point per decision, like the telemetry percentiles
                self._otel_latency.record(elapsed_ms, attrs)
            self._otel_decisions.add(n_ok, attrs)
        self.stats.decisions += n_ok
        self.stats.batches += 1
        # Acknowledged before the offsets are committed (at-least-once).
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.stats.publish_errors += len(errors)
            raise errors[0]

    async def _wait_for_policy(self, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + self.config.wait_for_policy_s
        while not self.policy.wait_ready(0):
            if stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no verified snapshot of policy {self.config.policy_id!r} on {self.topics.policy} "
                    f"after {self.config.wait_for_policy_s}s"
                )
            await asyncio.sleep(0.1)
        return True

    @property
    def dead_letter_reasons(self) -> dict[str, int]:
        sink = getattr(self, "_sink", None)
        return dict(sink.counts) if sink is not None else {}

    def _touch_health(self) -> None:
        if self.config.health_file:
            with contextlib.suppress(OSError):
                Path(self.config.health_file).touch()

    # ------------------------------------------------------------ telemetry

    def telemetry_metrics(self) -> dict[str, float]:
        s = self.stats
        metrics = {
            "decisions": float(s.decisions),
            "dead_lettered": float(s.dead_lettered),
            "batches": float(s.batches),
            "publish_errors": float(s.publish_errors),
            "policy_version": float(self.policy.version),
            "snapshots_loaded": float(self.subscriber.stats.loaded),
            "snapshots_rejected": float(sum(self.subscriber.stats.rejected.values())),
        }
        if s.latency_ms:
            lat = np.fromiter(s.latency_ms, dtype=np.float64)
            metrics["decision_latency_ms_p50"] = float(np.percentile(lat, 50))
            metrics["decision_latency_ms_p95"] = float(np.percentile(lat, 95))
            metrics["decision_latency_ms_max"] = float(lat.max())
        return metrics

    async def _telemetry_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.telemetry_every_s)
            if not stop.is_set():
                with contextlib.suppress(KafkaError, TimeoutError):
                    await asyncio.wait_for(self._send_telemetry(), timeout=5)

    async def _send_telemetry(self) -> None:
        packet = telemetry_packet(
            f"serve/{self.config.serve_id}",
            self.config.run_id,
            self.telemetry_metrics(),
            healthy=self.stats.publish_errors == 0,
            labelled=[
                LabelledMetric("dead_lettered", float(n), {"reason": r}) for r, n in self.dead_letter_reasons.items()
            ],
        )
        await self._producer.send(self.topics.telemetry, self.telemetry_encoder.encode(packet), key=b"serve")

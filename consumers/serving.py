"""The serving service: the Kafka loop around `Decider` (`state` in; `commands`, `telemetry`, `deadletter` out).

```
 state topic ──▶ decode + validate ──▶ TamiyoGNN (greedy, masked) ──▶ AdaptationCommand ──▶ commands topic
 (any producer)   bad ─▶ deadletter      ▲ latest VERIFIED snapshot                        key = training_run_id
                                         └── SnapshotAcceptor (compacted policy topic, --policy-id)
```

All packets of one fetch go through one forward pass (`serve_core.Decider`); each decision's latency
is the whole batch's wall time (an upper bound for every decision in it).  Offsets are committed after
the commands are acknowledged (at-least-once: a restart may answer a state twice, with the same
``command_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.deadletter import DeadLetterSink
from tamiyo.bus.follow import follow_newest
from tamiyo.bus.loops import every, send_quietly, wait_until
from tamiyo.bus.observability import instruments
from tamiyo.consumers.serve_core import Decider, GreedyPolicy, ServeStats, serve_metrics
from tamiyo.contracts.codec import EnvelopeEncoder
from tamiyo.contracts.env_schemas import HOST_ENVS, env_schema, is_host_env
from tamiyo.contracts.signing import TrustedKeys
from tamiyo.contracts.telemetry import LabelledMetric, telemetry_packet
from tamiyo.contracts.topics import Topics
from tamiyo.policy.verification import SnapshotAcceptor, SnapshotVerifier
from tamiyo.producers.blueprints import CATALOG

DEFAULT_POLICY_ID = "tamiyo-serving"


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


class ServeService:
    def __init__(self, config: ServeConfig, settings: KafkaSettings, topics: Topics, trusted: TrustedKeys) -> None:
        """``trusted``: the public keys a policy snapshot must be signed with to be served."""
        if not is_host_env(config.env):
            raise ValueError(f"serving answers host envs {HOST_ENVS} (AdaptationCommands), not {config.env!r}")
        self.config = config
        self.settings = settings.with_client_id(f"tamiyo-{config.serve_id}")
        self.topics = topics
        self.stats = ServeStats()
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self.schema = env_schema(config.env)
        self.policy = GreedyPolicy(device=config.device)
        verifier = SnapshotVerifier(trusted, config.policy_id, self.schema)
        self.acceptor = SnapshotAcceptor(self.policy, verifier, config.device)
        incarnation = f"{os.getpid():x}{time.time_ns() & 0xFFFFFF:06x}"
        source, producer_id = f"serve/{config.serve_id}", f"{config.serve_id}:{incarnation}"
        blueprint_ids = tuple(b.blueprint_id for b in CATALOG)
        self.decider = Decider(self.policy, self.schema, blueprint_ids, EnvelopeEncoder(source, producer_id))
        self.telemetry_encoder = EnvelopeEncoder(source, f"{producer_id}:telemetry")
        self.deadletter = DeadLetterSink(topics.deadletter, source)
        self.ready = asyncio.Event()  # set once a policy is loaded and the state topic is subscribed

    async def run(self, stop: asyncio.Event | None = None) -> ServeStats:
        stop = stop or asyncio.Event()
        cfg = self.config
        group = cfg.group_id or f"tamiyo-serve-{cfg.run_id or 'default'}"
        consumer = make_consumer(self.settings, self.topics.state, group_id=group, fetch_max_wait_ms=100)
        producer = make_producer(self.settings, linger_ms=0)
        await producer.start()
        follow = follow_newest(self.settings, self.topics.policy, self.acceptor.accept, stop, "tamiyo-policy-sub")
        tasks = [asyncio.create_task(follow, name="policy-subscriber")]
        try:
            what = f"no verified snapshot of policy {cfg.policy_id!r} on {self.topics.policy}"
            if not await wait_until(lambda: self.policy.wait_ready(0), stop, cfg.wait_for_policy_s, what):
                return self.stats
            await consumer.start()
            tasks.append(
                asyncio.create_task(every(cfg.telemetry_every_s, stop, lambda: self._send_telemetry(producer)))
            )
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
                    await self._serve(records, producer)
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
            await send_quietly(lambda: self._send_telemetry(producer))
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(consumer.stop(), timeout=10)
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(producer.stop(), timeout=10)
        return self.stats

    async def _serve(self, records: list[ConsumerRecord], producer: AIOKafkaProducer) -> None:
        t0 = time.perf_counter()
        decisions = self.decider.decide([r.value for r in records])
        futures = []
        for rec, d in zip(records, decisions, strict=True):
            if d.error is not None:
                self.stats.dead_lettered += 1
                await self.deadletter.send(producer, rec, d.error)
            else:
                futures.append(await producer.send(self.topics.commands, d.value, key=d.key))
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        n_ok = len(futures)
        self.stats.latency_ms.extend([elapsed_ms] * n_ok)
        if n_ok:
            attrs: dict[str, str | int] = {"service": "serve", "policy_version": self.policy.version}
            for _ in range(n_ok):  # one point per decision, like the telemetry percentiles
                instruments().serve_latency_ms.record(elapsed_ms, attrs)
            instruments().serve_decisions.add(n_ok, attrs)
        self.stats.decisions += n_ok
        self.stats.batches += 1
        # Acknowledged before the offsets are committed (at-least-once).
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.stats.publish_errors += len(errors)
            raise errors[0]

    @property
    def dead_letter_reasons(self) -> dict[str, int]:
        return dict(self.deadletter.counts)

    def _touch_health(self) -> None:
        if self.config.health_file:
            with contextlib.suppress(OSError):
                Path(self.config.health_file).touch()

    def telemetry_metrics(self) -> dict[str, float]:
        rejected = sum(self.acceptor.stats.rejected.values())
        return serve_metrics(self.stats, self.policy.version, self.acceptor.stats.loaded, rejected)

    async def _send_telemetry(self, producer: AIOKafkaProducer) -> None:
        reasons = self.dead_letter_reasons.items()
        packet = telemetry_packet(
            f"serve/{self.config.serve_id}",
            self.config.run_id,
            self.telemetry_metrics(),
            healthy=self.stats.publish_errors == 0,
            labelled=[LabelledMetric("dead_lettered", float(n), {"reason": r}) for r, n in reasons],
        )
        await producer.send(self.topics.telemetry, self.telemetry_encoder.encode(packet), key=b"serve")

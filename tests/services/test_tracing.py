"""OpenTelemetry across the bus: one trace per trajectory (actor → replay → batch → learner), and metrics."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tamiyo.bus.admin import ensure_topics
from tamiyo.consumers.replay_service import ReplayService
from tamiyo.contracts.topics import Topics
from tamiyo.learner.core import LearnerConfig
from tamiyo.learner.service import LearnerService
from tamiyo.policy.model import ModelConfig
from tamiyo.producers.actor import Actor, ActorConfig
from tamiyo.replay_store.replay_config import ReplayConfig
from tests.keys import SIGNER

from .helpers import produce, wait_until

pytestmark = pytest.mark.broker
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def otel_providers():
    # Global providers can be set once per process; these in-memory ones serve this module.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


def _metric_points(name: str) -> list:
    data = METRICS.get_metrics_data()
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


async def test_a_trajectory_is_one_trace_from_actor_to_learner_update(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    actor = Actor(
        ActorConfig(env="host-sim", num_envs=2, unroll_length=5, actor_id="t1", controller="heuristic", max_unrolls=8),
        kafka_settings,
        topics,
    )
    await actor.run()
    await produce(kafka_settings, topics.trajectories, [b"garbage"])  # for the dead-letter counter
    replay = ReplayService(ReplayConfig(batch_size=4, max_in_flight=1, run_id=run_name), kafka_settings, topics)
    learner = LearnerService(
        LearnerConfig(env="host-sim", run_id=run_name, max_updates=2, model=ModelConfig(hidden=8)),
        kafka_settings,
        topics,
        SIGNER,
    )
    stop = asyncio.Event()
    replay_task = asyncio.create_task(replay.run(stop))
    try:
        await asyncio.wait_for(learner.run(), timeout=120)
        await wait_until(lambda: replay.stats.acks >= 2, what="acks")
    finally:
        stop.set()
        await asyncio.wait_for(replay_task, timeout=30)

    spans = SPANS.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    items = [s for s in spans if s.name == "learner.item"]
    assert len(items) == 8  # two updates of four trajectories
    for item in items:
        chain = [item.name]
        span = item
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            assert span.context.trace_id == item.context.trace_id
            chain.append(span.name)
        assert chain == ["learner.item", "replay.batch_item", "replay.insert", "actor.publish"]
        assert "tamiyo.policy_lag" in item.attributes
    updates = [s for s in spans if s.name == "learner.update"]
    batches = {s.context.span_id: s for s in spans if s.name == "replay.publish_batch"}
    assert len(updates) == 2
    for u in updates:
        assert u.parent is not None and u.parent.span_id in batches  # batch publish → learner update
        assert len(batches[u.parent.span_id].links) == 4  # linked to the trajectories it carries

    frames = sum(p.value for p in _metric_points("tamiyo.frames"))
    assert frames == actor.stats.env_steps == 40
    dead = [p for p in _metric_points("tamiyo.deadlettered") if p.attributes["reason"] == "MalformedRecordError"]
    assert sum(p.value for p in dead) >= 1
    assert _metric_points("tamiyo.batch.latency") and _metric_points("tamiyo.policy.lag")
    assert {p.attributes["topic"] for p in _metric_points("tamiyo.records.out")} >= {
        topics.trajectories,
        topics.batches,
        topics.priorities,
    }
    losses = {p.attributes["name"] for p in _metric_points("tamiyo.learner.loss")}
    assert {"policy_loss", "baseline_loss"} <= losses

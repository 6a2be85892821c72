"""Small helpers for service tests against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.examples import example_unroll
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb


async def produce(settings: KafkaSettings, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=key) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def trajectory_records(count: int, producer_id: str, seed: int = 0, version: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    enc = EnvelopeEncoder("actor/test", producer_id=producer_id)
    out = []
    for _ in range(count):
        u = example_unroll(rng)
        u.policy_versions[:] = version
        out.append(enc.encode(unroll_to_proto(u, "example-host")))
    return out


async def read(settings: KafkaSettings, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def wait_until(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def latest_metrics(records: list, source_prefix: str) -> dict[str, float]:
    """Metrics of the newest telemetry packet from a source starting with ``source_prefix``."""
    for rec in reversed(records):
        packet = decode_envelope(rec.value, expect=pb.TelemetryPacket).payload
        if packet.source.startswith(source_prefix):
            return {m.name: m.value for m in packet.metrics if not m.labels}
    return {}

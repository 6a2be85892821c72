"""1,000 envelopes of mixed types through a real broker: none lost, none duplicated, all equal."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.clients import make_consumer, make_producer
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.examples import example_payloads
from tamiyo.contracts.topics import Topics

pytestmark = pytest.mark.broker


async def test_thousand_mixed_envelopes_round_trip(kafka_settings, run_name):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics, trajectory_partitions=3)
    rng = np.random.default_rng(7)
    kinds = example_payloads(rng)
    sent = [kinds[i % len(kinds)] for i in range(1000)]
    encoders = [EnvelopeEncoder("actor", producer_id=f"actor-{k}") for k in range(3)]

    producer = make_producer(kafka_settings, compression_type="zstd")
    # acks=all + idempotence (a transaction manager tracks producer id/epoch): retries cannot duplicate.
    assert producer._txn_manager is not None and producer._sender._acks == -1
    await producer.start()
    try:
        futures = []
        for i, msg in enumerate(sent):
            actor = i % 3
            futures.append(
                await producer.send(topics.trajectories, encoders[actor].encode(msg), key=f"actor-{actor}".encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_settings, topics.trajectories, group_id=f"g-{run_name}")
    await consumer.start()
    got: dict[tuple[str, int], object] = {}
    duplicates = 0
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=200)).values():
                for rec in records:
                    d = decode_envelope(rec.value)
                    key = (d.envelope.producer_id, d.envelope.sequence)
                    duplicates += key in got
                    got[key] = d.payload
            await consumer.commit()  # only after the batch is applied
    finally:
        await consumer.stop()

    assert duplicates == 0
    assert len(got) == len(sent)
    for i, msg in enumerate(sent):
        assert got[(f"actor-{i % 3}", i // 3)] == msg

    # A second consumer in the same group starts from the committed offsets: nothing left.
    again = make_consumer(kafka_settings, topics.trajectories, group_id=f"g-{run_name}")
    await again.start()
    try:
        leftover = await again.getmany(timeout_ms=2000)
        assert sum(len(v) for v in leftover.values()) == 0
    finally:
        await again.stop()

"""`tamiyo demo`: the bus end to end in one command.

Starts the local broker (unless ``--bootstrap`` is given), creates a run's
topics, publishes one envelope of every Leyline payload type through an
idempotent producer, reads them back with a manual-commit consumer group and
prints what came back.  Stops the broker again if it started it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.broker import DEFAULT_DATA_DIR, BrokerError, LocalBroker
from tamiyo.bus.clients import (
    KafkaSettings,
    add_kafka_arguments,
    make_consumer,
    make_producer,
    settings_from_args,
)
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.examples import example_payloads
from tamiyo.contracts.topics import Topics


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="push one envelope of every Leyline type through Kafka and read them back")
    add_kafka_arguments(p)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="local broker data dir")
    p.add_argument("--port", type=int, default=None, help="local broker port")
    p.add_argument("--keep-broker", action="store_true", help="leave the local broker running afterwards")
    p.set_defaults(handler=_handle)


async def roundtrip(settings: KafkaSettings, run: str) -> dict:
    topics = Topics.for_run(run)
    await ensure_topics(settings, topics)
    payloads = example_payloads(np.random.default_rng(0))
    encoder = EnvelopeEncoder(source="demo", correlation_id=run)
    producer = make_producer(settings, compression_type="zstd")
    await producer.start()
    try:
        for msg in payloads:
            await producer.send(topics.telemetry, encoder.encode(msg), key=b"demo")
        await producer.flush()
    finally:
        await producer.stop()
    consumer = make_consumer(settings, topics.telemetry, group_id=f"demo-{run}")
    await consumer.start()
    received: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(received) < len(payloads) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    d = decode_envelope(rec.value)
                    received.append(
                        {
                            "offset": rec.offset,
                            "type": d.envelope.payload_type,
                            "bytes": len(rec.value),
                            "encoding": "zstd" if d.envelope.content_encoding == 2 else "identity",
                            "sequence": d.envelope.sequence,
                            "equal_to_sent": d.payload == payloads[d.envelope.sequence],
                        }
                    )
            await consumer.commit()
    finally:
        await consumer.stop()
    return {
        "topic": topics.telemetry,
        "sent": len(payloads),
        "received": len(received),
        "all_equal": all(r["equal_to_sent"] for r in received) and len(received) == len(payloads),
        "records": received,
    }


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.cli.extras import require_extra

    require_extra("kafka-zstd", "tamiyo demo (it sends zstd-compressed record batches)")
    broker = None
    try:
        if args.bootstrap:
            settings = settings_from_args(args)
        else:
            broker = LocalBroker(args.data_dir)
            was_running = broker.running_info() is not None
            info = broker.up(port=args.port)
            print(f"local broker: {info.to_json()}", flush=True)
            if was_running:
                broker = None  # not ours to stop
            settings = settings_from_args(args, bootstrap=info.bootstrap)
        run = f"demo-{int(time.time())}"
        report = asyncio.run(roundtrip(settings, run))
        for r in report["records"]:
            print(
                f"  offset {r['offset']:>3}  {r['type']:<30} {r['bytes']:>6} B  {r['encoding']:<8}"
                f"  equal={r['equal_to_sent']}"
            )
        print(json.dumps({k: v for k, v in report.items() if k != "records"}))
        return 0 if report["all_equal"] else 1
    except BrokerError as err:
        print(f"tamiyo demo: error: {err}")
        return 2
    finally:
        if broker is not None and not args.keep_broker:
            broker.down()

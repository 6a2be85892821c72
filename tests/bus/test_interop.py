"""A record written by Tamiyo, read by a non-Python Kafka client (kcat) and decoded by protoc."""

from __future__ import annotations

import codecs
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tamiyo.bus.admin import ensure_topics
from tamiyo.bus.clients import make_producer
from tamiyo.contracts.codec import EnvelopeEncoder
from tamiyo.contracts.examples import seed_document_state_packet
from tamiyo.contracts.topics import Topics

pytestmark = pytest.mark.broker
PROTO_DIR = Path(__file__).resolve().parents[2] / "contracts" / "proto"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI (.ci/run installs it)")
        pytest.skip(f"{tool} not installed (apt-get install kcat protobuf-compiler)")
    return path


def _protoc_decode(protoc: str, message: str, data: bytes) -> str:
    r = subprocess.run(
        [protoc, f"-I{PROTO_DIR}", f"--decode=leyline.v1.{message}", "leyline.proto"],
        input=data,
        capture_output=True,
        check=True,
        cwd=PROTO_DIR,
    )
    return r.stdout.decode()


async def test_kcat_reads_and_protoc_decodes_a_tamiyo_record(kafka_settings, run_name):
    kcat, protoc = _require("kcat"), _require("protoc")
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.state, EnvelopeEncoder("interop").encode(seed_document_state_packet()))
    finally:
        await producer.stop()

    raw = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            kafka_settings.bootstrap,
            "-t",
            topics.state,
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-f",
            "%s",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    envelope = _protoc_decode(protoc, "EventEnvelope", raw)
    assert 'payload_type: "leyline.v1.SystemStatePacket"' in envelope
    assert "schema_version: 1" in envelope
    assert "content_encoding: CONTENT_ENCODING_IDENTITY" in envelope
    # protoc prints bytes fields C-escaped; unescape the payload and decode it with protoc too.
    escaped = re.search(r'^payload: "(.*)"$', envelope, re.MULTILINE).group(1)
    payload = codecs.escape_decode(escaped.encode())[0]
    packet = _protoc_decode(protoc, "SystemStatePacket", payload)
    assert "current_epoch: 100" in packet
    assert "validation_accuracy: 0.85" in packet
    assert 'device_type: "cuda"' in packet
    assert 'key: "gradient_norm"' in packet

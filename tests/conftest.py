"""Session-wide fixtures: one real Kafka broker for every integration test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tamiyo.bus.broker import BrokerInfo, LocalBroker, free_port
from tamiyo.bus.clients import KafkaSettings


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    """A real Apache Kafka broker on a free port, stopped at the end of the session (pass or fail).

    Set TAMIYO_TEST_BOOTSTRAP to run the integration tests against an existing cluster instead.
    """
    external = os.environ.get("TAMIYO_TEST_BOOTSTRAP")
    if external:
        yield BrokerInfo(bootstrap=external, pid=0, kafka_version="external", data_dir="")
        return
    data_dir = Path(tmp_path_factory.mktemp("kafka"))
    broker = LocalBroker(data_dir, heap_mb=768)
    # die_with_parent: if pytest itself is killed, Linux stops the broker too.
    info = broker.up(port=free_port(), timeout_s=120, die_with_parent=True)
    try:
        yield info
    finally:
        broker.down(grace_s=20)


@pytest.fixture(scope="session")
def kafka_settings(kafka_broker: BrokerInfo) -> KafkaSettings:
    return KafkaSettings(bootstrap=kafka_broker.bootstrap)


@pytest.fixture
def run_name() -> str:
    """A fresh run name, so every test gets its own topics."""
    return f"t{uuid.uuid4().hex[:10]}"

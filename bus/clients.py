"""aiokafka clients configured the Tamiyo way (idempotent producers, manual commits).

Connection settings (bootstrap, SASL, TLS) come from `KafkaSettings`, which the
CLI fills from ``--bootstrap``/``--security-protocol``/... flags or the
``TAMIYO_KAFKA_*`` environment variables, so every service can point at any
Kafka cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "tamiyo"

    def common_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            ctx = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            kw["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password
        return kw

    def with_client_id(self, client_id: str) -> KafkaSettings:
        return KafkaSettings(**{**self.__dict__, "client_id": client_id})

    def to_env(self) -> dict[str, str]:
        """These settings as the ``TAMIYO_KAFKA_*`` variables `add_kafka_arguments` reads: how `tamiyo train`
        hands a cluster (credentials included) to its child services without putting secrets on a command line."""
        values = {
            "BOOTSTRAP": self.bootstrap,
            "SECURITY_PROTOCOL": self.security_protocol,
            "SASL_MECHANISM": self.sasl_mechanism,
            "SASL_USERNAME": self.sasl_username,
            "SASL_PASSWORD": self.sasl_password,
            "SSL_CAFILE": self.ssl_cafile,
            "SSL_CERTFILE": self.ssl_certfile,
            "SSL_KEYFILE": self.ssl_keyfile,
        }
        return {f"TAMIYO_KAFKA_{k}": v for k, v in values.items() if v is not None}


def add_kafka_arguments(parser: argparse.ArgumentParser, bootstrap_required: bool = False) -> None:
    """The connection flags every service shares."""
    env = os.environ.get
    g = parser.add_argument_group("Kafka connection")
    g.add_argument(
        "--bootstrap",
        default=env("TAMIYO_KAFKA_BOOTSTRAP"),
        required=bootstrap_required and not env("TAMIYO_KAFKA_BOOTSTRAP"),
        help="bootstrap servers host:port[,host:port] (env TAMIYO_KAFKA_BOOTSTRAP)",
    )
    g.add_argument(
        "--security-protocol",
        default=env("TAMIYO_KAFKA_SECURITY_PROTOCOL"),
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="default: the credentials file's, else PLAINTEXT",
    )
    g.add_argument("--sasl-mechanism", default=env("TAMIYO_KAFKA_SASL_MECHANISM"))
    g.add_argument("--sasl-username", default=env("TAMIYO_KAFKA_SASL_USERNAME"))
    g.add_argument(
        "--sasl-password",
        default=env("TAMIYO_KAFKA_SASL_PASSWORD"),
        help="prefer the env var TAMIYO_KAFKA_SASL_PASSWORD over the flag",
    )
    g.add_argument("--ssl-cafile", default=env("TAMIYO_KAFKA_SSL_CAFILE"))
    g.add_argument("--ssl-certfile", default=env("TAMIYO_KAFKA_SSL_CERTFILE"))
    g.add_argument("--ssl-keyfile", default=env("TAMIYO_KAFKA_SSL_KEYFILE"))
    g.add_argument(
        "--kafka-credentials",
        default=env("TAMIYO_KAFKA_CREDENTIALS"),
        metavar="FILE",
        help="a role's credentials file of `tamiyo broker up --secure` (protocol, SCRAM user and password, CA); "
        "explicit flags win (env TAMIYO_KAFKA_CREDENTIALS)",
    )


def settings_from_args(args: argparse.Namespace, bootstrap: str | None = None) -> KafkaSettings:
    boot = bootstrap or args.bootstrap
    if not boot:
        _fail("error: no Kafka cluster given: pass --bootstrap or set TAMIYO_KAFKA_BOOTSTRAP")
    given = credentials_file(args.kafka_credentials) if getattr(args, "kafka_credentials", None) else {}
    return KafkaSettings(
        bootstrap=boot,
        security_protocol=args.security_protocol or given.get("security_protocol") or "PLAINTEXT",
        sasl_mechanism=args.sasl_mechanism or given.get("sasl_mechanism"),
        sasl_username=args.sasl_username or given.get("username"),
        sasl_password=args.sasl_password or given.get("password"),
        ssl_cafile=args.ssl_cafile or given.get("ssl_cafile"),
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def credentials_file(path: str) -> dict[str, str]:
    """The settings in a credentials file (JSON, string values); a one-line error if it is unusable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        _fail(f"error: cannot read Kafka credentials {path}: {err}")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        _fail(f"error: {path} is not a Kafka credentials file (a JSON object of strings)")
    return data


def _fail(message: str) -> NoReturn:
    """A configuration error: one line on stderr, exit status 2 (as argparse's own)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def make_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """Idempotent, acks=all producer: a retry never duplicates or reorders within a partition."""
    kw: dict[str, Any] = {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": 16 << 20,
        "request_timeout_ms": 30_000,
    }
    kw.update(settings.common_kwargs())
    kw.update(overrides)
    return AIOKafkaProducer(**kw)


def make_consumer(settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """Manual-commit consumer: services commit only after the data is safely applied."""
    kw: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 64 << 20,
        "fetch_max_bytes": 128 << 20,
        "isolation_level": "read_uncommitted",
    }
    kw.update(settings.common_kwargs())
    kw.update(overrides)
    return AIOKafkaConsumer(*topics, **kw)


def make_admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.common_kwargs())


async def wait_for_partitions(
    consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event | None = None, timeout_s: float = 30.0
) -> set[int]:
    """The partition numbers of ``topic``, waiting for its metadata (the topic may have just been created).

    Refreshes the consumer's metadata every 0.2 s until the topic shows up; an empty set if ``stop`` is
    set or ``timeout_s`` passes first.  Call it before assigning: an unassigned consumer's refresh asks
    for every topic, so a topic the consumer has never heard of is found too.
    """
    deadline = time.monotonic() + timeout_s
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            return set()
        await asyncio.sleep(0.2)
        await consumer._client.force_metadata_update()  # aiokafka has no public call for this
        partitions = consumer.partitions_for_topic(topic)
    return set(partitions)


async def assign_from_beginning(
    consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event | None = None, timeout_s: float = 30.0
) -> list[TopicPartition]:
    """Assign every partition of ``topic`` (no consumer group) and seek to the start of each.

    For readers that need the whole topic: the compacted policy topic, telemetry, benchmarks.
    Waits for the topic's metadata (it may have just been created); [] if ``stop`` is set first.
    """
    partitions = await wait_for_partitions(consumer, topic, stop, timeout_s)
    if not partitions:
        return []
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps

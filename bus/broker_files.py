"""The files a local broker runs from, in its data dir: ``server.properties``, ``log4j2.properties``,
and the KRaft cluster id its storage was formatted with (``logs/meta.properties``).

Both properties files are regenerated on every start; the broker listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from tamiyo.bus.broker_security import BROKER_PRINCIPAL, SCRAM_MECHANISM, SecurityFiles


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """A single-node KRaft broker+controller: client port ``port``, controller port ``controller_port``."""
    return "\n".join(
        [
            "# Written by `tamiyo broker up`; regenerated on every start.",
            *_node(controller_port),
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            *_storage_and_limits(data_dir),
        ]
    )


def secure_server_properties(
    data_dir: Path, port: int, internal_port: int, controller_port: int, security: SecurityFiles
) -> str:
    """The same broker, secured: clients on a SASL_SSL listener (SCRAM-SHA-512 only) at ``port``; the
    controller and inter-broker listeners TLS with a required client certificate (the broker's own:
    principal ``broker``); every request authorised by KRaft's StandardAuthorizer, nothing allowed
    without an ACL.  Super users: the broker and the ``admin`` role (topics, ACLs)."""
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return "\n".join(
        [
            "# Written by `tamiyo broker up --secure`; regenerated on every start.",
            *_node(controller_port),
            f"listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:SSL,INTERNAL:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name=INTERNAL",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={security.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={security.ca}",
            "listener.name.internal.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([A-Za-z0-9._-]+)$/$1/,DEFAULT",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{BROKER_PRINCIPAL};User:admin",
            *_storage_and_limits(data_dir),
        ]
    )


def _node(controller_port: int) -> list[str]:
    return ["process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{controller_port}"]


def _storage_and_limits(data_dir: Path) -> list[str]:
    return [
        f"log.dirs={data_dir / 'logs'}",
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        f"message.max.bytes={64 << 20}",
        f"replica.fetch.max.bytes={64 << 20}",
        "log.cleaner.backoff.ms=5000",
        "",
    ]


def log4j2_properties(data_dir: Path) -> str:
    """Warnings (and the started line) to ``<data_dir>/broker.log``."""
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {data_dir / 'broker.log'}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = info",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.kafka.name = kafka",
            "logger.kafka.level = warn",
            "logger.org.name = org.apache.kafka",
            "logger.org.level = warn",
            "logger.started.name = kafka.server.KafkaRaftServer",
            "logger.started.level = info",
            "",
        ]
    )


def stored_cluster_id(log_dir: Path) -> str | None:
    """The cluster id the storage in ``log_dir`` was formatted with; None if it is not formatted."""
    meta = log_dir / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (22 chars), as Kafka's own Uuid.

    Like Kafka, never start with '-': command-line parsers would read such an id as an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid

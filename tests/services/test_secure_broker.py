"""The secure local broker (`tamiyo broker up --secure`): TLS + SCRAM-SHA-512 per service role, KRaft's
StandardAuthorizer with nothing allowed without an ACL, least-privilege ACLs per run, and
`tamiyo train --secure` running the whole pipeline on it, each service as its own role."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from tamiyo.bus.acls import grant_run_acls, run_acls
from tamiyo.bus.admin import ensure_topics, list_topics
from tamiyo.bus.broker import BrokerInfo, LocalBroker, free_port
from tamiyo.bus.broker_security import ROLES, read_credentials
from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
from tamiyo.bus.processes import pid_alive
from tamiyo.contracts.topics import LOGICAL_TOPICS, Topics

pytestmark = pytest.mark.broker
TAMIYO = [sys.executable, "-m", "tamiyo.cli.main"]
# What each role may write (bus/acls.py); everything else must be refused.
WRITES = {
    "actor": {"trajectories", "telemetry"},
    "replay": {"batches", "deadletter", "telemetry"},
    "learner": {"priorities", "policy", "telemetry", "deadletter"},
    "serve": {"commands", "deadletter", "telemetry"},
    "host": {"state"},
}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerInfo]:
    broker = LocalBroker(tmp_path_factory.mktemp("secure-kafka"), heap_mb=512)
    info = broker.up(port=free_port(), timeout_s=120, die_with_parent=True, secure=True)
    try:
        yield info
    finally:
        broker.down(grace_s=20)


async def _fails_to_connect(settings: KafkaSettings) -> None:
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(list_topics(settings), timeout=30)


async def test_a_client_needs_tls_and_the_right_scram_password(secure_broker):
    actor = secure_broker.settings("actor")
    await _fails_to_connect(KafkaSettings(secure_broker.bootstrap))  # plaintext on the TLS listener
    await _fails_to_connect(KafkaSettings(secure_broker.bootstrap, "SSL", ssl_cafile=secure_broker.ca_file))  # no SASL
    await _fails_to_connect(replace(actor, sasl_password="not-the-password"))
    await _fails_to_connect(replace(actor, sasl_username="nobody"))
    await _fails_to_connect(replace(actor, ssl_cafile=None))  # a broker certificate we cannot verify
    assert await list_topics(actor) == []  # authenticated, but no ACL yet: sees nothing


def test_secrets_are_private_files_and_never_printed(secure_broker):
    data_dir = Path(secure_broker.data_dir)
    assert stat.S_IMODE((data_dir / "security").stat().st_mode) == 0o700
    assert not list((data_dir / "security").glob(".args-*"))  # the format's argument file is gone
    secret_files = [data_dir / "security" / "broker.pem", data_dir / "server.properties"]
    for path in [*secret_files, *map(Path, secure_broker.credentials.values())]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    status = subprocess.run([*TAMIYO, "broker", "status", "--data-dir", str(data_dir)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    report = json.loads(status.stdout)
    assert report["mode"] == "secure" and report["running"] and report["security_protocol"] == "SASL_SSL"
    assert set(report["credentials"]) == set(ROLES) and report["ca_file"] == secure_broker.ca_file
    passwords = [read_credentials(Path(p))["password"] for p in secure_broker.credentials.values()]
    printed = status.stdout + status.stderr + secure_broker.to_json() + (data_dir / "server.properties").read_text()
    assert not any(pw in printed for pw in passwords)


async def test_each_role_writes_only_its_own_topics_of_its_own_run(secure_broker, run_name):
    admin = secure_broker.settings("admin")
    topics, other = Topics.for_run(run_name), Topics.for_run(run_name + "-other")
    await ensure_topics(admin, topics)
    await ensure_topics(admin, other)  # another run on the same broker: no ACLs granted for it
    assert len(await grant_run_acls(admin, run_name)) == len(run_acls(run_name))
    assert set(WRITES) | {"admin"} == set(ROLES)
    for role, allowed in WRITES.items():
        producer = make_producer(secure_broker.settings(role), request_timeout_ms=10_000)
        await producer.start()
        try:
            for logical in LOGICAL_TOPICS:
                topic = topics.name(logical)
                if logical in allowed:
                    await producer.send_and_wait(topic, b"x", key=b"k")  # policy is compacted: keyed
                else:
                    with pytest.raises(TopicAuthorizationFailedError):
                        await producer.send_and_wait(topic, role.encode())
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(other.name(next(iter(allowed))), b"x")
        finally:
            await producer.stop()
    # Nothing a refused role sent was written: the actor's forged policy never reached the topic.
    reader = make_consumer(admin, group_id=None)
    await reader.start()
    try:
        from aiokafka import TopicPartition

        ends = await reader.end_offsets([TopicPartition(topics.name(t), 0) for t in LOGICAL_TOPICS])
        written = {tp.topic.rsplit(".", 1)[1]: n for tp, n in ends.items()}
        assert written["policy"] == 1 and written["state"] == 1  # the learner's and the host's one record each
        assert written["trajectories"] == 1 and written["telemetry"] == len(WRITES) - 1  # all but the host
    finally:
        await reader.stop()
    # An actor cannot read another run's policy.
    consumer = make_consumer(secure_broker.settings("actor"), other.policy, group_id=None)
    with pytest.raises(TopicAuthorizationFailedError):
        await consumer.start()
    await consumer.stop()


def test_train_secure_runs_every_service_as_its_role_and_leaves_nothing_running(secure_broker, tmp_path):
    out = tmp_path / "runs"
    done = subprocess.run(
        [*TAMIYO, "train", "--secure", "--data-dir", secure_broker.data_dir, "--env", "host-sim", "--updates", "6",
         "--actors", "1", "--envs-per-actor", "4", "--batch-size", "8", "--hidden", "16", "--eval-tasks", "2",
         "--out", str(out), "--run-id", "secure"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["security_protocol"] == "SASL_SSL" and summary["updates"] >= 6 and summary["frames"] > 0
    assert summary["broker_started"] is False  # the running secure broker was used, and left running
    rows = [json.loads(line) for line in (out / "secure" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    loaded = max(r["metrics"].get("snapshots_loaded", 0) for r in rows if r["source"].startswith("actor"))
    assert loaded >= 1  # the actor accepted the learner's signed snapshots
    assert (out / "secure" / "policy.safetensors").exists()
    pids = json.loads((out / "secure" / "pids.json").read_text())
    assert not any(pid_alive(pid) for name, pid in pids.items() if name != "broker")
    assert pid_alive(secure_broker.pid)
    for name in ("learner", "replay", "actor-0"):
        log = (out / "secure" / "logs" / f"{name}.log").read_text()
        assert "AuthorizationFailed" not in log and "SaslAuthenticationFailed" not in log, name

"""Pure parts of the secure setup: the ACL table, the secure broker's config, and client settings that
travel through the environment or a credentials file (no broker here)."""

from __future__ import annotations

import argparse
import json
import stat

import pytest

from tamiyo.bus.acls import DESCRIBE, GROUP, READ, TOPIC, WRITE, run_acls
from tamiyo.bus.broker_files import secure_server_properties
from tamiyo.bus.broker_security import (
    ROLES,
    ensure_security,
    read_credentials,
    scram_format_arguments,
    write_argument_file,
)
from tamiyo.bus.clients import KafkaSettings, add_kafka_arguments, settings_from_args


def test_run_acls_are_the_least_privilege_table_and_name_only_this_run():
    acls = run_acls("r1")
    granted = {(a.principal, a.resource_type, a.resource_name, a.operation) for a in acls}
    assert len(granted) == len(acls)

    def topics(role: str, op: int) -> set[str]:
        mine = [(kind, name, o) for p, kind, name, o in granted if p == f"User:{role}"]
        return {name.removeprefix("tamiyo.r1.") for kind, name, o in mine if kind == TOPIC and o == op}

    assert topics("actor", WRITE) == {"trajectories", "telemetry"} and topics("actor", READ) == {"policy"}
    assert topics("replay", READ) == {"trajectories", "priorities"}
    assert topics("replay", WRITE) == {"batches", "deadletter", "telemetry"}
    assert topics("learner", READ) == {"batches", "policy"}
    assert topics("learner", WRITE) == {"priorities", "policy", "telemetry", "deadletter"}
    assert topics("serve", READ) == {"state", "policy"} and topics("serve", WRITE) == {
        "commands",
        "deadletter",
        "telemetry",
    }
    groups = {(p, name, o) for p, kind, name, o in granted if kind == GROUP}
    own = {("User:replay", "tamiyo-replay-r1", READ), ("User:learner", "tamiyo-learner-r1", READ)}
    own |= {("User:serve", "tamiyo-serve-r1", READ), ("User:actor", "tamiyo-replay-r1", DESCRIBE)}
    own |= {("User:host", "tamiyo-host-r1", READ)}
    assert topics("host", WRITE) == {"state"} and topics("host", READ) == {"commands"}
    assert groups == own
    assert all(name.startswith(("tamiyo.r1.", "tamiyo-")) and "r1" in name for _, _, name, _ in granted)
    assert not any(p == "User:admin" for p, *_ in granted)  # a super user needs none


def test_security_files_are_private_and_the_broker_config_secures_every_listener(tmp_path):
    files = ensure_security(tmp_path / "security")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.keystore.stat().st_mode) == 0o600
    creds = {role: read_credentials(files.credentials(role)) for role in ROLES}
    assert all(stat.S_IMODE(files.credentials(r).stat().st_mode) == 0o600 for r in ROLES)
    assert len({c["password"] for c in creds.values()}) == len(ROLES)  # one secret per role
    again = ensure_security(tmp_path / "security")  # idempotent: the same credentials
    assert read_credentials(again.credentials("actor")) == creds["actor"]
    args = scram_format_arguments(files)
    assert args.count("--add-scram") == len(ROLES)
    assert not any(c["password"] in " ".join(args) for c in creds.values())  # salted, never the password
    # A lost credentials file cannot be made again once the storage holds the SCRAM credentials.
    files.credentials("serve").rename(tmp_path / "away.json")
    with pytest.raises(ValueError, match=r"serve\.json is missing and the broker's storage was formatted"):
        ensure_security(tmp_path / "security", formatted=True)
    (tmp_path / "away.json").rename(files.credentials("serve"))
    # A keystore that ca.pem did not sign (a crash between the two writes, a replaced CA) is made again.
    keystore = files.keystore.read_bytes()
    other = ensure_security(tmp_path / "other")
    files.ca.write_bytes(other.ca.read_bytes())
    ensure_security(tmp_path / "security")
    assert files.keystore.read_bytes() != keystore and files.ca.read_bytes() != other.ca.read_bytes()
    argfile = write_argument_file(files.directory, args)
    assert stat.S_IMODE(argfile.stat().st_mode) == 0o600 and argfile.read_text().splitlines() == args
    props = secure_server_properties(tmp_path, 9093, 9094, 9095, files)
    assert "listener.security.protocol.map=CONTROLLER:SSL,INTERNAL:SSL,SASL_SSL:SASL_SSL" in props
    assert "PLAINTEXT" not in props.replace("SASL_SSL", "")
    assert "allow.everyone.if.no.acl.found=false" in props and "StandardAuthorizer" in props
    assert "listener.name.controller.ssl.client.auth=required" in props
    assert all(f"//127.0.0.1:{p}" in props for p in (9093, 9094, 9095))
    assert not any(c["password"] in props for c in creds.values())


def _parse(argv: list[str], env: dict[str, str], monkeypatch) -> KafkaSettings:  # type: ignore[no-untyped-def]
    for key in [k for k in __import__("os").environ if k.startswith("TAMIYO_KAFKA_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_settings_survive_the_trip_through_a_childs_environment(monkeypatch):
    given = KafkaSettings("h:1", "SASL_SSL", "SCRAM-SHA-512", "actor", "pw", "/ca.pem", "/c.pem", "/k.pem")
    assert _parse([], given.to_env(), monkeypatch) == given
    assert KafkaSettings("h:1").to_env() == {
        "TAMIYO_KAFKA_BOOTSTRAP": "h:1",
        "TAMIYO_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }


def test_a_credentials_file_fills_what_the_flags_leave_unset(tmp_path, monkeypatch):
    path = tmp_path / "actor.json"
    data = {"username": "actor", "password": "pw", "sasl_mechanism": "SCRAM-SHA-512",
            "security_protocol": "SASL_SSL", "ssl_cafile": "/ca.pem"}  # fmt: skip
    path.write_text(json.dumps(data))
    got = _parse(["--bootstrap", "h:1", "--kafka-credentials", str(path)], {}, monkeypatch)
    assert got == KafkaSettings("h:1", "SASL_SSL", "SCRAM-SHA-512", "actor", "pw", "/ca.pem")
    flags = _parse(
        ["--bootstrap", "h:1", "--kafka-credentials", str(path), "--sasl-username", "other"], {}, monkeypatch
    )
    assert flags.sasl_username == "other" and flags.sasl_password == "pw"
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit) as exit_:
        _parse(["--bootstrap", "h:1", "--kafka-credentials", str(path)], {}, monkeypatch)
    assert exit_.value.code == 2

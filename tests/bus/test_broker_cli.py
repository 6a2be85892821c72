"""`tamiyo broker` lifecycle on its own data dir: idempotent up, durable down/up, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tamiyo.bus.broker import free_port

pytestmark = pytest.mark.broker


def tamiyo(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tamiyo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_up_is_idempotent_status_reports_and_data_survives_restart(tmp_path: Path, kafka_broker):
    data_dir = str(tmp_path / "b")
    port = free_port()
    try:
        first = tamiyo("broker", "up", "--data-dir", data_dir, "--port", str(port))
        assert first.returncode == 0, first.stderr
        info = json.loads(first.stdout.strip().splitlines()[-1])
        assert info["bootstrap"] == f"127.0.0.1:{port}"
        assert info["kafka_version"].startswith("4.")
        assert info["data_dir"] == str(Path(data_dir).resolve())
        again = tamiyo("broker", "up", "--data-dir", data_dir)
        assert json.loads(again.stdout) == info
        status = json.loads(tamiyo("broker", "status", "--data-dir", data_dir).stdout)
        assert status["running"] and status["pid"] == info["pid"]

        created = tamiyo("topics", "create", "--run", "durable", "--bootstrap", info["bootstrap"])
        assert created.returncode == 0, created.stderr

        down = json.loads(tamiyo("broker", "down", "--data-dir", data_dir).stdout)
        assert down["stopped"] is True
        assert json.loads(tamiyo("broker", "status", "--data-dir", data_dir).stdout)["running"] is False
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0

        restarted = json.loads(tamiyo("broker", "up", "--data-dir", data_dir).stdout)
        assert restarted["bootstrap"] == info["bootstrap"] and restarted["pid"] != info["pid"]
        listed = json.loads(tamiyo("topics", "list", "--bootstrap", info["bootstrap"]).stdout)
        assert "tamiyo.durable.policy" in listed
    finally:
        tamiyo("broker", "down", "--data-dir", data_dir)


def test_port_in_use_is_a_one_line_error(tmp_path: Path, kafka_broker):
    taken = int(kafka_broker.bootstrap.rsplit(":", 1)[1])
    r = tamiyo("broker", "up", "--data-dir", str(tmp_path / "c"), "--port", str(taken))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "already in use" in r.stderr


def test_data_dir_of_another_cluster_is_refused(tmp_path: Path, kafka_broker):
    logs = tmp_path / "d" / "logs"
    logs.mkdir(parents=True)
    (logs / "meta.properties").write_text("version=1\nnode.id=1\ncluster.id=SomeoneElsesCluster00\n")
    r = tamiyo("broker", "up", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()))
    assert r.returncode == 2 and "another cluster" in r.stderr and r.stderr.strip().count("\n") == 0


def test_missing_java_and_maven_are_one_line_errors(tmp_path: Path):
    env = {**os.environ, "PATH": str(tmp_path), "TAMIYO_CACHE": str(tmp_path / "cache")}
    r = tamiyo("broker", "up", "--data-dir", str(tmp_path / "e"), env=env)
    assert r.returncode == 2 and "Java 17+" in r.stderr and r.stderr.strip().count("\n") == 0
    r = tamiyo("broker", "fetch", env=env)
    assert r.returncode == 2 and "Maven" in r.stderr and r.stderr.strip().count("\n") == 0

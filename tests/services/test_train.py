"""`tamiyo train` end to end: the run directory, and a clean stop on SIGTERM with nothing left running."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tamiyo.bus.admin import list_topics
from tamiyo.bus.processes import pid_alive
from tamiyo.contracts.codec import decode_envelope

from .helpers import produce, read

pytestmark = pytest.mark.broker
TRAIN = [sys.executable, "-m", "tamiyo.cli.main", "train"]


def _learner_updates(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return max((int(r["metrics"].get("updates", 0)) for r in rows if r["source"] == "learner"), default=0)


async def _inject_garbage_when_topics_exist(settings, topic: str, count: int) -> None:
    for _ in range(600):
        if topic in await list_topics(settings):
            break
        await asyncio.sleep(0.2)
    await produce(settings, topic, [b"\x00not-an-envelope-%d" % i for i in range(count)])


async def test_train_runs_the_pipeline_deadletters_garbage_and_writes_the_run_directory(
    kafka_broker, kafka_settings, tmp_path
):
    out = tmp_path / "runs"
    proc = await asyncio.create_subprocess_exec(
        *TRAIN, "--bootstrap", kafka_broker.bootstrap, "--env", "host-sim", "--updates", "8", "--actors", "1",
        "--envs-per-actor", "4", "--batch-size", "8", "--eval-tasks", "4", "--out", str(out), "--run-id", "e2e",
        "--hidden", "16",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # Malformed records arrive on the trajectories topic in the middle of the run.
    await _inject_garbage_when_topics_exist(kafka_settings, "tamiyo.e2e.trajectories", 5)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=400)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    run = out / "e2e"
    for name in (
        "config.json",
        "metrics.jsonl",
        "learning_curve.png",
        "report.md",
        "policy.safetensors",
        "policy.json",
    ):
        assert (run / name).exists(), name
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["updates"] >= 8 and summary["frames"] > 0 and summary["broker_started"] is False
    letters = await read(kafka_settings, "tamiyo.e2e.deadletter", 5)
    assert len(letters) == 5
    assert {decode_envelope(r.value).payload.reason for r in letters} == {"MalformedRecordError"}
    report = (run / "report.md").read_text()
    assert "| policy |" in report and "| heuristic |" in report
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert set(evaluation["controllers"]) == {"policy", "heuristic", "none"}
    ev = subprocess.run(
        [sys.executable, "-m", "tamiyo.cli.main", "eval", "--controller", str(run / "policy.safetensors"),
         "--tasks", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-1000:]
    assert json.loads(ev.stdout)["controller"].startswith("policy:")


def test_sigterm_stops_everything_train_started_within_seconds(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [*TRAIN, "--env", "gym:CartPole-v1", "--minutes", "10", "--actors", "1", "--envs-per-actor", "4",
         "--batch-size", "4", "--out", str(out), "--run-id", "sig", "--data-dir", str(tmp_path / "broker"),
         "--hidden", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = out / "sig"
    try:
        deadline = time.monotonic() + 240
        while _learner_updates(run / "metrics.jsonl") < 2:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no learner progress"
            time.sleep(1)
        pids = json.loads((run / "pids.json").read_text())
        assert pids["broker"] > 0 and all(pid_alive(p) for p in pids.values())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert stopped_in < 45
    time.sleep(0.5)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert (run / "report.md").exists() and (run / "policy.safetensors").exists()

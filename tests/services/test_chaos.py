"""Chaos run: `kill -9` an actor, the replay, the learner and then the Kafka broker itself during one
`tamiyo train`, and check what the delivery claims promise (README "Delivery", ARCHITECTURE.md).

After the run, on the broker's own log:
- no acknowledged trajectory is stuck or skipped: the replay group's committed offsets never pass the end of
  `trajectories`, and a replay of the run started again applies the rest and commits up to the end (what a
  killed replay held in memory is the documented loss: a buffer without a snapshot path dies with its
  process; that an offset is committed only after its insert is `tests/replay_store`'s to prove);
- per actor incarnation (producer id ``<actor>:<incarnation>``) the acknowledged sequences have no gap:
  nothing that was sent before a fault is missing after it (the outbox of a killed actor, never sent, is
  the documented loss), and the policy versions it acted with never go down;
- per actor incarnation, every acknowledged trajectory is accounted for: the replay group committed past it
  (the replay commits an offset only once its record is applied), and it was inserted, dropped as a re-sent
  duplicate of a sequence already there (the dedup key; the only drop rule of prioritized mode), or
  dead-lettered with a reason (none expected: every trajectory here is valid);
- the policy versions on the `policy` topic never go down across the learner's and the broker's restarts;
- the learner keeps updating after every fault, the run reaches its frame budget and exits 0, and nothing
  it started is left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tamiyo.bus.broker import LocalBroker
from tamiyo.bus.clients import KafkaSettings, make_consumer, wait_for_partitions
from tamiyo.bus.processes import pid_alive
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.packing import unroll_from_proto
from tamiyo.contracts.proto import leyline_pb2 as pb

from .helpers import read

pytestmark = [pytest.mark.slow, pytest.mark.broker]
TRAIN = [sys.executable, "-m", "tamiyo.cli.main", "train"]
FRAMES = 40_000


def _rows(metrics: Path) -> list[dict]:
    if not metrics.exists():
        return []
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def _updates(metrics: Path) -> int:
    """Learner updates so far, over every learner incarnation: `tamiyo train` runs the learner with
    ``--telemetry-every 1``, one packet per update (a restarted learner's own counter may start again)."""
    return sum(1 for r in _rows(metrics) if r["source"] == "learner" and "updates" in r["metrics"])


def _account(records: list, committed: dict[int, int], dead: set[tuple[int, int]]) -> dict[str, dict[str, int]]:
    """Per producer incarnation: how many trajectories the broker acknowledged, and what became of each."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: set[tuple[str, int]] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = decode_envelope(r.value, expect=pb.Trajectory).envelope
        row = table[envelope.producer_id]
        row["acknowledged"] += 1
        row["applied"] += int(r.offset < committed.get(r.partition, 0))
        key = (envelope.producer_id, envelope.sequence)
        if (r.partition, r.offset) in dead:
            row["deadlettered"] += 1
        elif key in seen:
            row["duplicates"] += 1
        else:
            row["inserted"] += 1
        seen.add(key)
    return {producer: dict(row) for producer, row in table.items()}


async def _committed_and_end(settings: KafkaSettings, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """``group``'s committed offset and the end offset of every partition of ``topic``."""
    probe = make_consumer(settings, group_id=None)
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await wait_for_partitions(probe, topic, timeout_s=10.0))]
        ends = {tp.partition: off for tp, off in (await probe.end_offsets(tps)).items()}
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}, ends
    finally:
        await consumer.stop()


@pytest.mark.timeout(900)
def test_kill_9_of_each_service_and_of_the_broker_loses_nothing_acknowledged(tmp_path):
    out, data_dir = tmp_path / "runs", tmp_path / "broker"
    proc = subprocess.Popen(
        [*TRAIN, "--env", "host-sim", "--frames", str(FRAMES), "--actors", "1", "--envs-per-actor", "4",
         "--batch-size", "8", "--eval-tasks", "2", "--out", str(out), "--run-id", "chaos", "--hidden", "16",
         "--data-dir", str(data_dir), "--keep-broker", "--max-restarts", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = out / "chaos"
    metrics = run / "metrics.jsonl"
    broker = LocalBroker(data_dir)
    updates_after: dict[str, tuple[int, int]] = {}  # victim -> (updates when killed, updates at the end)
    try:
        deadline = time.monotonic() + 600

        def wait(what: str, cond) -> None:  # type: ignore[no-untyped-def]
            while not cond():
                assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
                assert time.monotonic() < deadline, f"timed out: {what}"
                time.sleep(0.3)

        def pids() -> dict[str, int]:
            return json.loads((run / "pids.json").read_text()) if (run / "pids.json").exists() else {}

        wait("the first learner updates", lambda: _updates(metrics) >= 3)
        for victim in ("actor-0", "replay", "learner"):
            pid, before = pids()[victim], _updates(metrics)
            os.kill(pid, signal.SIGKILL)
            wait(f"{victim} restarted", lambda v=victim, p=pid: pids().get(v, p) != p)
            wait(f"updates after killing {victim}", lambda b=before: _updates(metrics) >= b + 3)
            updates_after[victim] = (before, _updates(metrics))
        info = broker.running_info()
        assert info is not None
        port, before = int(info.bootstrap.rsplit(":", 1)[1]), _updates(metrics)
        os.kill(info.pid, signal.SIGKILL)
        wait("the broker's pid gone", lambda: not pid_alive(info.pid))
        time.sleep(3.0)  # the services see the broker gone: their retries, reconnects and restarts start
        broker.up(port=port)  # the same data dir and port, as an operator (or systemd) would
        wait("updates after the broker's restart", lambda: _updates(metrics) >= before + 3)
        updates_after["broker"] = (before, _updates(metrics))
        stdout, stderr = proc.communicate(timeout=max(60.0, deadline - time.monotonic()))
        assert proc.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["frames"] >= FRAMES and summary["stop_reason"] == f"reached {FRAMES} env frames"
        killed = {(r["service"], r["exit_code"]) for r in summary["restarts"]}
        assert {("actor-0", -9), ("replay", -9), ("learner", -9)} <= killed, summary["restarts"]
        report = (run / "report.md").read_text()
        assert "learner (exit code -9" in report and "replay (exit code -9" in report

        settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}")
        # What the replay had not consumed when the run stopped it waits in Kafka: a replay of the run started
        # again applies it and commits up to the end of the log (no record is stuck or skipped).
        group, topic = "tamiyo-replay-chaos", "tamiyo.chaos.trajectories"
        committed, ends = asyncio.run(_committed_and_end(settings, topic, group))
        assert all(committed[p] <= ends[p] for p in ends) and sum(ends.values()) > 0, (committed, ends)
        drain = [sys.executable, "-m", "tamiyo.cli.main", "replay", "--run", "chaos", "--bootstrap", settings.bootstrap,
                 "--env", "host-sim", "--max-seconds", "8"]  # fmt: skip
        subprocess.run(drain, capture_output=True, timeout=120, check=True)
        committed, ends = asyncio.run(_committed_and_end(settings, topic, group))
        assert committed == ends, (committed, ends)
        # Per actor incarnation: no gap in the acknowledged sequences; policy versions never go down.
        records = asyncio.run(read(settings, "tamiyo.chaos.trajectories", sum(ends.values()), timeout_s=60))
        assert len(records) == sum(ends.values())
        letters = [decode_envelope(r.value, expect=pb.DeadLetter).payload
                   for r in asyncio.run(read(settings, "tamiyo.chaos.deadletter", 100_000, timeout_s=5))]  # fmt: skip
        dead = {(d.partition, d.offset) for d in letters if d.source_topic == topic}
        accounts = _account(records, committed, dead)
        print("per actor incarnation:", json.dumps(accounts, sort_keys=True))
        for producer, row in accounts.items():
            assert row["applied"] == row["acknowledged"], (producer, row)
            assert row.get("deadlettered", 0) == 0, (producer, row, [d.detail for d in letters])
            assert row["inserted"] + row.get("duplicates", 0) == row["acknowledged"], (producer, row)
        by_producer: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for r in records:
            decoded = decode_envelope(r.value, expect=pb.Trajectory)
            versions = unroll_from_proto(decoded.payload).policy_versions
            assert (np.diff(versions) >= 0).all(), f"{decoded.envelope.producer_id}: versions went down in an unroll"
            by_producer[decoded.envelope.producer_id].append(
                (decoded.envelope.sequence, int(versions.min()), int(versions.max()))
            )
        assert len(by_producer) >= 2, sorted(by_producer)  # the killed actor's incarnation and its successor
        for producer, items in by_producer.items():
            sequences = sorted({s for s, _, _ in items})
            assert sequences == list(range(sequences[0], sequences[-1] + 1)), f"{producer}: a gap in {sequences}"
            assert accounts[producer]["inserted"] == len(sequences), (producer, accounts[producer])
            # The unrolls of one collect (one per env) share its steps, so their version ranges overlap; across
            # collects, in sequence order, the first and the last version of an unroll never go down.
            in_order = sorted(items)
            assert all(a[1] <= b[1] and a[2] <= b[2] for a, b in pairwise(in_order)), f"{producer}: versions went down"
        # Policy versions on the topic never went backwards across the restarts.
        policy = asyncio.run(read(settings, "tamiyo.chaos.policy", 100_000, timeout_s=10))
        versions = [decode_envelope(r.value).payload.version for r in policy]
        assert len(versions) > 10 and versions == sorted(versions)
        for victim, (at_kill, later) in updates_after.items():
            assert later >= at_kill + 3, f"no learner progress after killing {victim}"
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.down()
    time.sleep(0.5)
    left = {n: p for n, p in json.loads((run / "pids.json").read_text()).items() if p and pid_alive(p)}
    assert left == {}, left

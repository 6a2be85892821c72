"""`tamiyo topic dump|tail|stats|record|replay` against the real broker, on a topic with garbage in it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zstandard
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from tamiyo.bus.clients import KafkaSettings, make_admin, make_consumer, make_producer, wait_for_partitions
from tamiyo.consumers.recording import (
    RecordedRecord,
    RecordingError,
    RecordingWriter,
    encode_record,
    open_recording,
    read_recording,
)
from tamiyo.consumers.render import render_record, render_value
from tamiyo.consumers.topic_reader import ReadRange, Record, TopicReader, TopicToolError, parse_time, read_topic
from tamiyo.consumers.topic_replay import Pacer, record_topic, replay_file, replay_topic
from tamiyo.consumers.topic_stats import StatsAccumulator, topic_stats
from tamiyo.contracts.codec import EnvelopeEncoder, encode_payload_bytes
from tamiyo.contracts.examples import example_payloads, example_unroll
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb

from .helpers import read, trajectory_records

BOMB_BYTES = 300 << 20  # more than the codec's 256 MiB payload cap
TRAJ_BASE_MS = int(time.time() * 1000) - 3_600_000  # partition 1 records are stamped an hour ago, 1 s apart
N_TRAJ = 6


# ---------------------------------------------------------------- the mixed topic


def _zstd_bomb(enc: EnvelopeEncoder) -> bytes:
    """An envelope whose zstd payload declares (and would inflate to) 300 MiB of zeros."""
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=BOMB_BYTES)
    chunk = bytes(1 << 20)
    frame = b"".join(cobj.compress(chunk) for _ in range(BOMB_BYTES >> 20)) + cobj.flush()
    env = pb.EventEnvelope.FromString(enc.encode(pb.HardwareContext(device_type="cpu")))
    env.content_encoding = pb.CONTENT_ENCODING_ZSTD
    env.payload = frame
    env.uncompressed_size = 1000  # lies
    return env.SerializeToString()


def _real_batch(rng: np.random.Generator) -> pb.SampledBatch:
    raw = unroll_to_proto(example_unroll(rng, length=8), "example-host").SerializeToString()
    encoding, body = encode_payload_bytes(raw)
    item = pb.SampledItem(index=1, key=2, weight=0.7, encoding=encoding, uncompressed_size=len(raw), trajectory=body)
    return pb.SampledBatch(batch_id=42, items=[item], buffer_size=10, beta=0.4, replay_id="replay-test")


def build_partition0() -> tuple[list[bytes | None], dict[int, str]]:
    """Values for partition 0 and the expected error reason by offset (absent: decodes)."""
    rng = np.random.default_rng(7)
    enc = EnvelopeEncoder("test/topic-tools", producer_id="tt:1")
    good = [enc.encode(p) for p in [*example_payloads(rng), _real_batch(rng)]]
    bad_version = pb.EventEnvelope.FromString(good[0])
    bad_version.schema_version = 9
    nan = enc.encode(pb.TelemetryPacket(source="x", metrics=[pb.MetricPoint(name="loss", value=0.0)]))
    nan_env = pb.EventEnvelope.FromString(nan)
    packet = pb.TelemetryPacket(source="x", metrics=[pb.MetricPoint(name="loss", value=float("nan"))])
    nan_env.payload = packet.SerializeToString()
    nan_env.uncompressed_size = len(nan_env.payload)
    bad: list[tuple[bytes | None, str]] = [
        (np.random.default_rng(1).bytes(200), "MalformedRecordError"),
        (good[6][:60], "MalformedRecordError"),  # a truncated trajectory envelope
        (bad_version.SerializeToString(), "SchemaVersionError"),
        (_zstd_bomb(enc), "OversizeError"),
        (nan_env.SerializeToString(), "NonFiniteError"),
        (b"", "MalformedRecordError"),
        (None, "Tombstone"),
    ]
    values: list[bytes | None] = list(good)
    reasons: dict[int, str] = {}
    for value, reason in bad:
        reasons[len(values)] = reason
        values.append(value)
    values.append(good[1])  # a good one after the garbage
    return values, reasons


async def _create_topic(settings: KafkaSettings, name: str, partitions: int) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        cfg = {"max.message.bytes": str(16 << 20)}
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=cfg)], timeout_ms=30_000)
    finally:
        await admin.close()


async def _populate(settings: KafkaSettings, topic: str, p0: list[bytes | None]) -> list[bytes]:
    await _create_topic(settings, topic, 2)
    traj = trajectory_records(N_TRAJ, "actor-1:1", seed=3)
    producer = make_producer(settings)
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=b"mixed", partition=0) for v in p0]
        for i, v in enumerate(traj):
            headers = [("traceparent", b"00-abc-def-01")] if i == 0 else None
            futs.append(
                await producer.send(
                    topic, v, key=b"actor-1", partition=1, timestamp_ms=TRAJ_BASE_MS + 1000 * i, headers=headers
                )
            )
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return traj


def _start_cli_dump(bootstrap: str, topic: str, out_dir: Path) -> tuple[subprocess.Popen, Path, Path]:
    """``tamiyo topic dump TOPIC --format jsonl`` in the background: its interpreter start overlaps the other tests."""
    script = Path(sys.executable).parent / "tamiyo"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "tamiyo.cli.main"]
    out, err = out_dir / "dump.jsonl", out_dir / "dump.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [*entry, "topic", "dump", topic, "--format", "jsonl", "--bootstrap", bootstrap],
            stdout=fo,
            stderr=fe,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    return proc, out, err


@pytest.fixture(scope="module")
def mixed(kafka_settings, tmp_path_factory):
    """A 2-partition topic: partition 0 every payload type + garbage, partition 1 trajectories."""
    topic = f"tamiyo.t{uuid.uuid4().hex[:8]}.mixed"
    p0, reasons = build_partition0()
    traj = asyncio.run(_populate(kafka_settings, topic, p0))
    cli = _start_cli_dump(kafka_settings.bootstrap, topic, tmp_path_factory.mktemp("cli"))
    yield {"topic": topic, "p0": p0, "reasons": reasons, "traj": traj, "total": len(p0) + len(traj), "cli": cli}
    if cli[0].poll() is None:
        cli[0].kill()
        cli[0].wait()


async def _dump(settings, topic, rng=None, full: bool = False, **kw) -> list[dict]:
    async with read_topic(settings, topic, rng, **kw) as (_reader, records):
        return [render_record(r, full=full) async for r in records]


# ---------------------------------------------------------------- dump


@pytest.mark.broker
async def test_dump_shows_every_record_with_typed_reasons(kafka_settings, mixed):
    docs = await _dump(kafka_settings, mixed["topic"])
    assert len(docs) == mixed["total"]
    p0 = sorted((d for d in docs if d["partition"] == 0), key=lambda d: d["offset"])
    p1 = [d for d in docs if d["partition"] == 1]
    assert [d["offset"] for d in p0] == list(range(len(mixed["p0"])))
    assert [d["offset"] for d in p1] == list(range(N_TRAJ))  # order within a partition
    got = {d["offset"]: d["error"]["reason"] for d in p0 if not d["ok"]}
    assert got == mixed["reasons"]
    assert all(d["ok"] for d in p1)
    for d in p0:
        if not d["ok"]:
            assert d["error"]["message"] or d["error"]["reason"] == "Tombstone"
    by_type = {d["envelope"]["payload_type"]: d for d in p0 if d["ok"]}
    assert len(by_type) == 11  # every Leyline payload type decodes and renders
    nan = p0[max(k for k, v in mixed["reasons"].items() if v == "NonFiniteError")]
    assert nan["envelope"]["payload_type"] == "leyline.v1.TelemetryPacket"  # envelope shown, payload refused

    traj = p1[0]["payload"]
    assert traj["T"] == 20 and traj["actor_id"] == "actor-0"
    assert traj["graphs"]["num_graphs"] == 21
    assert traj["graphs"]["nodes"]["layer"] == {"count": 21 * 4, "num_features": 6}
    assert traj["graphs"]["edges"]["layer:next:layer"]["count"] == 21 * 3
    assert isinstance(traj["rewards_sum"], float) and "rewards" not in traj
    assert p1[0]["headers"] == {"traceparent": "00-abc-def-01"} and p1[0]["key"] == "actor-1"

    batches = [d["payload"] for d in p0 if d["ok"] and d["envelope"]["payload_type"] == "leyline.v1.SampledBatch"]
    assert "LeylineError" not in json.dumps(batches)
    example, real = batches  # the example's item holds b"x": the item, not the record, carries the reason
    assert example["items"][0]["trajectory"]["error"]["reason"] == "SizeMismatchError"  # declared 0, has 1
    assert real["batch_id"] == 42 and real["replay_id"] == "replay-test"
    assert real["items"][0]["trajectory"]["T"] == 8 and real["steps"] == 8
    snap = by_type["leyline.v1.PolicySnapshot"]["payload"]
    assert snap["weights_bytes"] == 256 and "weights" not in snap
    json.dumps(docs)  # everything is JSON

    full = await _dump(kafka_settings, mixed["topic"], ReadRange(partitions=(1,), last=1), full=True)
    assert len(full) == 1
    assert len(full[0]["payload"]["rewards"]) == 20
    assert len(full[0]["payload"]["graphs"]["nodes"]["layer"]["features"]) == 21 * 4


@pytest.mark.broker
async def test_dump_ranges(kafka_settings, mixed):
    topic, n0 = mixed["topic"], len(mixed["p0"])
    last = await _dump(kafka_settings, topic, ReadRange(last=2))
    assert sorted((d["partition"], d["offset"]) for d in last) == [(0, n0 - 2), (0, n0 - 1), (1, 4), (1, 5)]
    offs = await _dump(kafka_settings, topic, ReadRange(from_offset=3, partitions=(0,)))
    assert [d["offset"] for d in offs] == list(range(3, n0)) and {d["partition"] for d in offs} == {0}
    p1 = await _dump(kafka_settings, topic, ReadRange(partitions=(1,)))
    assert [d["offset"] for d in p1] == list(range(N_TRAJ)) and {d["partition"] for d in p1} == {1}
    when = await _dump(kafka_settings, topic, ReadRange(from_time_ms=TRAJ_BASE_MS + 2000, partitions=(1,)))
    assert [d["offset"] for d in when] == list(range(2, N_TRAJ))
    capped = await _dump(kafka_settings, topic, max_records=3)
    assert len(capped) == 3
    beyond = await _dump(kafka_settings, topic, ReadRange(from_offset=10_000))
    assert beyond == []
    with pytest.raises(TopicToolError, match="no partition"):
        await _dump(kafka_settings, topic, ReadRange(partitions=(7,)))
    with pytest.raises(TopicToolError, match="does not exist"):
        async with TopicReader(kafka_settings, f"{topic}.nope", metadata_timeout_s=1.0):
            pass


# ---------------------------------------------------------------- stats


@pytest.mark.broker
async def test_stats_counts_and_consumer_group_lag(kafka_settings, mixed):
    topic = mixed["topic"]
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = make_consumer(kafka_settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit({TopicPartition(topic, 0): 3, TopicPartition(topic, 1): N_TRAJ - 1})
    finally:
        await consumer.stop()

    s = await topic_stats(kafka_settings, topic)
    n0 = len(mixed["p0"])
    assert s["records"] == mixed["total"] and s["complete"]
    reasons = Counter(mixed["reasons"].values())
    assert s["undecodable"] == {"total": sum(reasons.values()), "by_reason": dict(reasons.most_common())}
    sizes = [len(v) if v is not None else 0 for v in [*mixed["p0"], *mixed["traj"]]]
    assert s["bytes"]["min"] == min(sizes) and s["bytes"]["max"] == max(sizes)
    assert s["bytes"]["total"] == sum(sizes)
    assert s["payload_types"]["leyline.v1.Trajectory"] == 1 + N_TRAJ
    assert s["payload_types"]["leyline.v1.SampledBatch"] == 2
    assert s["payload_types"]["leyline.v1.HardwareContext"] == 2  # the example + the bomb's envelope
    assert s["schema_versions"]["9"] == 1
    assert set(s["content_encodings"]) == {"CONTENT_ENCODING_IDENTITY", "CONTENT_ENCODING_ZSTD"}
    assert s["partitions"] == {
        "0": {"beginning": 0, "end": n0, "retained": n0, "scanned": n0},
        "1": {"beginning": 0, "end": N_TRAJ, "retained": N_TRAJ, "scanned": N_TRAJ},
    }
    lag = s["consumer_groups"][group]
    assert lag["partitions"]["0"] == {"committed": 3, "end": n0, "lag": n0 - 3}
    assert lag["partitions"]["1"] == {"committed": N_TRAJ - 1, "end": N_TRAJ, "lag": 1}
    assert lag["total_lag"] == n0 - 3 + 1


# ---------------------------------------------------------------- tail


@pytest.mark.broker
async def test_tail_follows_new_records_and_stops_by_itself(kafka_settings, run_name):
    topic = f"tamiyo.{run_name}.telemetry"
    await _create_topic(kafka_settings, topic, 1)
    enc = EnvelopeEncoder("test/tail", producer_id="tail:1")
    old = [enc.encode(pb.TelemetryPacket(source="old"))]
    new = [enc.encode(pb.TelemetryPacket(source=f"new-{i}")) for i in range(3)]
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, old[0])
        async with read_topic(kafka_settings, topic, follow=True, max_records=3, max_seconds=20) as (_r, records):
            for v in [*new, b"garbage"]:
                await producer.send_and_wait(topic, v)
            seen = [render_record(r) async for r in records]
    finally:
        await producer.stop()
    assert [d["payload"]["source"] for d in seen] == ["new-0", "new-1", "new-2"]  # not the old one; stops at --max

    t0 = time.monotonic()
    async with read_topic(kafka_settings, topic, follow=True, max_seconds=1.0) as (_r, records):
        quiet = [r async for r in records]
    assert quiet == [] and time.monotonic() - t0 < 10

    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)  # what SIGINT/SIGTERM do in the CLI
    async with read_topic(kafka_settings, topic, ReadRange(last=1), follow=True, stop=stop) as (_r, records):
        tailed = [render_record(r) async for r in records]
    assert [d["error"]["reason"] for d in tailed] == ["MalformedRecordError"]  # --last 1 then follow


# ---------------------------------------------------------------- record / replay


@pytest.mark.broker
async def test_record_then_replay_from_file_is_byte_identical(kafka_settings, mixed, tmp_path):
    path = str(tmp_path / "mixed.tyrec")
    out = await record_topic(kafka_settings, mixed["topic"], path)
    assert out["records"] == mixed["total"]
    header, recs = read_recording(path)
    assert header["format"] == "tamiyo-recording" and header["source_topics"] == [mixed["topic"]]
    by_part = {p: [r for r in recs if r.partition == p] for p in (0, 1)}
    assert [r.value for r in by_part[0]] == mixed["p0"]
    assert [r.value for r in by_part[1]] == mixed["traj"]
    assert by_part[1][0].headers == [("traceparent", b"00-abc-def-01")]
    assert [r.timestamp_ms for r in by_part[1]] == [TRAJ_BASE_MS + 1000 * i for i in range(N_TRAJ)]

    target = f"tamiyo.t{uuid.uuid4().hex[:8]}.batches"
    result = await replay_file(kafka_settings, path, target)
    assert result["records"] == mixed["total"] and result["created"]
    back = await read(kafka_settings, target, mixed["total"])
    assert [(r.key, r.value) for r in back] == [(r.key, r.value) for r in recs]  # one partition: file order
    assert [tuple(r.headers) for r in back if r.headers] == [(("traceparent", b"00-abc-def-01"),)]

    # The replayed topic dumps exactly like the original.
    docs = await _dump(kafka_settings, target)
    assert sorted(d["error"]["reason"] for d in docs if not d["ok"]) == sorted(mixed["reasons"].values())


@pytest.mark.broker
async def test_replay_topic_to_topic_respects_rate(kafka_settings, mixed):
    rate, n = 8.0, N_TRAJ
    target = f"tamiyo.t{uuid.uuid4().hex[:8]}.trajectories"
    result = await replay_topic(kafka_settings, mixed["topic"], target, ReadRange(partitions=(1,)), rate=rate)
    assert result["records"] == n and result["created"]
    back = await read(kafka_settings, target, n)
    assert [r.value for r in back] == mixed["traj"] and {r.key for r in back} == {b"actor-1"}
    stamps = sorted(r.timestamp for r in back)  # new timestamps: when each was sent
    tolerance_ms = 60
    for i in range(n):  # never ahead of the schedule t0 + i / rate
        assert stamps[i] - stamps[0] >= 1000 * i / rate - tolerance_ms
    assert result["seconds"] >= (n - 1) / rate - tolerance_ms / 1000

    with pytest.raises(TopicToolError, match="onto itself"):
        await replay_topic(kafka_settings, mixed["topic"], mixed["topic"])


@pytest.mark.broker
def test_cli_dump_jsonl(mixed):
    proc, out, err = mixed["cli"]  # started by the fixture
    assert proc.wait(timeout=120) == 0, err.read_text()
    docs = [json.loads(line) for line in out.read_text().splitlines()]  # one JSON document per line
    assert len(docs) == mixed["total"]
    assert Counter(d["error"]["reason"] for d in docs if not d["ok"]) == Counter(mixed["reasons"].values())
    summary = json.loads(err.read_text().strip().splitlines()[-1])
    assert summary == {"topic": mixed["topic"], "records": mixed["total"], "undecodable": len(mixed["reasons"])}


def _topic_cli(argv: list[str]) -> int:
    """The `tamiyo topic` handlers in-process (the `tamiyo` entry point itself is smoke-tested above)."""
    import argparse

    from tamiyo.cli import topic_cmd

    parser = argparse.ArgumentParser(prog="tamiyo")
    topic_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["topic", *argv])
    return args.handler(args)


@pytest.mark.broker
def test_cli_handlers_stats_record_replay_tail(kafka_settings, mixed, tmp_path, capsys):
    boot = ["--bootstrap", kafka_settings.bootstrap]
    topic, total = mixed["topic"], mixed["total"]
    assert _topic_cli(["stats", topic, "--no-groups", *boot]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == total and "consumer_groups" not in stats

    path = str(tmp_path / "p1.tyrec")
    assert _topic_cli(["record", topic, "--out", path, "--partition", "1", "--last", "3", *boot]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
    target = f"tamiyo.t{uuid.uuid4().hex[:8]}.trajectories"
    assert _topic_cli(["replay", "--from-file", path, "--to", target, "--rate", "50", *boot]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
    assert _topic_cli(["tail", target, "--last", "3", "--max-seconds", "2", *boot]) == 0
    tailed = [json.loads(line)["payload"]["sequence"] for line in capsys.readouterr().out.splitlines()]
    assert tailed == [render_value(v)["payload"]["sequence"] for v in mixed["traj"][-3:]]

    assert _topic_cli(["dump", f"{topic}.missing", "--wait-topic", "1", *boot]) == 2  # one line on stderr, exit 2
    assert "does not exist" in capsys.readouterr().err
    assert _topic_cli(["replay", topic, "--from-file", path, "--to", target, *boot]) == 2
    assert _topic_cli(["replay", "--from-file", str(tmp_path / "nope.tyrec"), "--to", target, *boot]) == 2


# ---------------------------------------------------------------- pure parts (no broker)


def test_recording_round_trip_and_corruption(tmp_path):
    path = str(tmp_path / "r.tyrec")
    recs = [
        RecordedRecord("t", 0, 5, 123, b"k", b"\x00\x01v", [("h", b"x"), ("n", None)]),
        RecordedRecord("t\u00e9", 3, 1 << 40, -1, None, None, []),
        RecordedRecord("t", 1, 0, 7, b"", b"", []),
    ]
    with RecordingWriter(path, ["t"]) as w:
        for r in recs:
            w.write(r)
    header, back = read_recording(path)
    assert back == recs and header["version"] == 1
    p = Path(path)
    data = p.read_bytes()
    p.write_bytes(data[:-3])  # truncated last record: the first two still come out
    got = []
    with pytest.raises(RecordingError, match="record 2"), open_recording(path) as (_h, it):
        for r in it:
            got.append(r)
    assert got == recs[:2]
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    p.write_bytes(bytes(flipped))
    with pytest.raises(RecordingError, match="CRC"):
        read_recording(path)
    p.write_bytes(b"PK\x03\x04" + data)
    with pytest.raises(RecordingError, match="magic"):
        read_recording(path)
    assert encode_record(recs[0])[8:16] == (123).to_bytes(8, "little")  # body starts with timestamp_ms


def test_render_never_raises_on_garbage():
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 50, 500):
        doc = render_value(rng.bytes(n))
        assert doc["ok"] is False and doc["error"]["reason"].endswith("Error")
    assert render_value(None)["error"]["reason"] == "Tombstone"


def test_parse_time_and_pacer():
    assert parse_time("1764120000000") == 1764120000000
    assert parse_time("2026-11-26T01:20:00Z") == parse_time("2026-11-26T01:20:00+00:00") == 1795656000000
    assert parse_time("2026-11-26T01:20:00") == 1795656000000
    with pytest.raises(TopicToolError):
        parse_time("yesterday")
    with pytest.raises(TopicToolError):
        Pacer(0)
    with pytest.raises(TopicToolError):
        ReadRange(last=3, from_offset=1)

    async def pace() -> float:
        limiter = Pacer(50.0)
        t0 = time.monotonic()
        for _ in range(6):
            await limiter.wait()
        return time.monotonic() - t0

    assert asyncio.run(pace()) >= 5 / 50.0 - 0.005


class _FakeClock:
    """A monotonic clock that only moves when the code under test sleeps (or a test says so)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_follows_the_schedule_with_a_fake_clock():
    clock = _FakeClock()
    pacer = Pacer(4.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def send(n: int) -> None:
        for _ in range(n):
            await pacer.wait()
            sent.append(clock.now)

    asyncio.run(send(5))
    assert sent == [100.0, 100.25, 100.5, 100.75, 101.0]  # the first at once, then exactly 1 / rate apart
    assert clock.sleeps == [0.25] * 4

    clock.now += 1.0  # a stall (a slow send): the records already due go at once, then back on the schedule
    clock.sleeps.clear()
    sent.clear()
    asyncio.run(send(6))
    assert sent == [102.0, 102.0, 102.0, 102.0, 102.25, 102.5]
    assert all(t >= 100.0 + i / 4.0 for i, t in enumerate(sent, start=5))  # never ahead of t0 + i / rate
    assert clock.sleeps == [0.25, 0.25]


def test_pacer_without_a_rate_never_waits():
    clock = _FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)

    async def go() -> None:
        for _ in range(100):
            await pacer.wait()

    asyncio.run(go())
    assert clock.sleeps == [] and clock.now == 100.0
    with pytest.raises(TopicToolError, match="positive"):
        Pacer(-1.0)


def test_stats_accumulator_counts_without_kafka():
    enc = EnvelopeEncoder("test/stats", producer_id="stats:1")
    good = enc.encode(pb.TelemetryPacket(source="a"))
    other_producer = EnvelopeEncoder("test/stats", producer_id="stats:2").encode(pb.HardwareContext(device_type="cpu"))
    future = pb.EventEnvelope.FromString(good)
    future.schema_version = 9
    values: list[tuple[bytes | None, int]] = [
        (good, 2_000),
        (other_producer, 1_000),
        (future.SerializeToString(), 3_000),
        (b"\xff\x00garbage", -1),  # no timestamp
        (None, 4_000),  # a tombstone
    ]
    acc = StatsAccumulator()
    for i, (value, ts) in enumerate(values):
        acc.add(Record("t", i % 2, i, ts, b"k", value))
    s = acc.summary()
    sizes = [len(v) if v is not None else 0 for v, _ in values]
    assert s["records"] == 5 and acc.per_partition == {0: 3, 1: 2}
    assert s["bytes"] == {
        "total": sum(sizes),
        "min": 0,
        "mean": round(sum(sizes) / 5, 1),
        "max": max(sizes),
    }
    assert s["payload_types"] == {"leyline.v1.TelemetryPacket": 1, "leyline.v1.HardwareContext": 1}
    current = str(pb.EventEnvelope.FromString(good).schema_version)
    assert s["schema_versions"] == {current: 2, "9": 1}  # the refused one is still counted
    assert s["content_encodings"] == {"CONTENT_ENCODING_IDENTITY": 2}
    assert s["undecodable"] == {
        "total": 3,
        "by_reason": {"SchemaVersionError": 1, "MalformedRecordError": 1, "Tombstone": 1},
    }
    assert s["producers"] == 2
    assert s["first_timestamp"] == "1970-01-01T00:00:01.000+00:00"
    assert s["last_timestamp"] == "1970-01-01T00:00:04.000+00:00"
    json.dumps(s)

    empty = StatsAccumulator().summary()
    assert empty["records"] == 0 and empty["bytes"] == {"total": 0, "min": 0, "mean": 0.0, "max": 0}
    assert empty["first_timestamp"] is None and empty["undecodable"] == {"total": 0, "by_reason": {}}


class _FakeMetadataConsumer:
    """Just enough of an AIOKafkaConsumer for `wait_for_partitions`: metadata appears after N refreshes."""

    def __init__(self, partitions: set[int] | None, after_refreshes: int) -> None:
        self.partitions, self.after, self.refreshes = partitions, after_refreshes, 0
        self._client = self

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        return True

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions if self.refreshes >= self.after else None


def test_wait_for_partitions_refreshes_until_the_topic_appears():
    async def go() -> None:
        ready = _FakeMetadataConsumer({2, 0, 1}, after_refreshes=0)
        assert await wait_for_partitions(ready, "t", timeout_s=1.0) == {0, 1, 2} and ready.refreshes == 0
        late = _FakeMetadataConsumer({0}, after_refreshes=2)
        assert await wait_for_partitions(late, "t", timeout_s=5.0) == {0} and late.refreshes == 2
        never = _FakeMetadataConsumer(None, after_refreshes=0)
        assert await wait_for_partitions(never, "t", timeout_s=0.3) == set()
        stop = asyncio.Event()
        stop.set()
        stopped = _FakeMetadataConsumer(None, after_refreshes=0)
        assert await wait_for_partitions(stopped, "t", stop, timeout_s=60.0) == set() and stopped.refreshes == 0

    asyncio.run(go())

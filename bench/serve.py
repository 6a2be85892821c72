"""Serving latency: prints one JSON object.

python bench/serve.py [--decisions 400] [--e2e 200] [--hidden 64] [--no-broker]

- ``decision_latency_ms_p50/p95``: the serving path in process, one state
  packet at a time (the worst case: no batching) — envelope decode and
  validation → GNN inference (greedy, masked) → AdaptationCommand envelope
  encode — exactly `Decider.decide([value])`, with the service's settings
  (one torch thread).  Packets come from real host-sim runs (random
  controller), the network is a default-size TamiyoGNN (hidden 64, what the
  learner trains).  The origin project's budget was 45 ms p95 for GNN
  inference on CPU.
- ``baseline_*``: the same decisions by the straightforward path in the same
  run: the codec's validating decode (which decodes the graph, then the
  service decodes it again), a sampling-free `ModelPolicy` with torch's
  default thread count (the actor's setting).
- ``e2e_round_trip_ms_p50/p95``: a client sends one packet to the `state`
  topic of a local broker the bench starts and waits for its command on
  `commands`, served by a `tamiyo serve` process (one packet in flight);
  ``e2e_baseline_kafka_echo_*``: the same round trips answered by a bare
  Kafka echo process (no decode, no GNN) — the bus's share of the round trip.
  ``serve_reported_*`` is what the serve process put in its telemetry.
- ``batched_decisions_per_s``: throughput when 32 packets share a forward pass.

Numbers depend on the machine's load: they are measured, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tamiyo.consumers.serve_core import Decider, GreedyPolicy
from tamiyo.contracts.codec import EnvelopeEncoder, decode_envelope
from tamiyo.contracts.packing import graphs_from_proto, unpack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.controllers import make_controller
from tamiyo.producers.envs import make_env


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def make_packets(n: int, seed: int = 0) -> tuple[list[bytes], object]:
    enc = EnvelopeEncoder("bench/host")
    out: list[bytes] = []
    env = make_env("host-sim", seed=seed)
    ctl = make_controller("random", seed=seed)
    obs, done = env.reset(), False
    ctl.reset()
    while len(out) < n:
        if done:
            obs, done = env.reset(), False
            ctl.reset()
        out.append(enc.encode(env.state_packet()))
        result = env.step(ctl.act(obs, env.info()))
        obs, done = result.observation, result.terminated or result.truncated
    return out, env


def in_process(args: argparse.Namespace) -> dict[str, object]:
    packets, env = make_packets(args.decisions + 50)
    schema = env.schema
    torch.manual_seed(0)
    model = TamiyoGNN(schema, ModelConfig(hidden=args.hidden)).eval()
    ids = [b.blueprint_id for b in CATALOG]
    default_threads = torch.get_num_threads()

    # Baseline: validating decode (graph decoded by the codec and again here), torch default threads.
    torch.set_num_threads(default_threads)
    naive = ModelPolicy(model, deterministic=True)
    enc = EnvelopeEncoder("bench/baseline")
    from tamiyo.contracts.commands import command_from_action

    base: list[float] = []
    with torch.inference_mode():
        for i, value in enumerate(packets):
            t0 = time.perf_counter()
            pkt = decode_envelope(value, expect=pb.SystemStatePacket).payload
            graph = graphs_from_proto(pkt.graph)
            mask = unpack_mask(pkt.action_mask, schema.joint_action_count)
            step = naive(graph, mask[None])
            cmd = command_from_action(
                step.actions[0], run_id=pkt.training_run_id, epoch=pkt.current_epoch, blueprint_ids=ids
            )
            enc.encode(cmd)
            if i >= 50:
                base.append((time.perf_counter() - t0) * 1e3)

    # The service's path: one thread, graph decoded once, greedy.
    torch.set_num_threads(1)
    decider = Decider(GreedyPolicy(model, version=1), schema, ids, EnvelopeEncoder("bench/serve"))
    lat: list[float] = []
    parts = {"decode": [], "inference": [], "encode": []}
    for i, value in enumerate(packets):
        t0 = time.perf_counter()
        d = decider.decide([value])[0]
        t1 = time.perf_counter()
        assert d.error is None, d.error
        if i >= 50:
            lat.append((t1 - t0) * 1e3)
    # Stage breakdown on a separate pass (timing calls inside decide() would perturb it).
    for value in packets[50:150]:
        t0 = time.perf_counter()
        p = decider.parse(value)
        t1 = time.perf_counter()
        step = decider.policy(p.graph, p.mask[None])
        t2 = time.perf_counter()
        decider.encoder.encode(command_from_action(step.actions[0], run_id=p.run_id, epoch=p.epoch, blueprint_ids=ids))
        t3 = time.perf_counter()
        parts["decode"].append((t1 - t0) * 1e3)
        parts["inference"].append((t2 - t1) * 1e3)
        parts["encode"].append((t3 - t2) * 1e3)
    # Batched throughput.
    batch = 32
    t0 = time.perf_counter()
    done = 0
    for start in range(0, len(packets) - batch + 1, batch):
        done += sum(d.error is None for d in decider.decide(packets[start : start + batch]))
    per_s = done / (time.perf_counter() - t0)
    s, b = _pct(lat), _pct(base)
    return {
        "decision_latency_ms_p50": s["p50"],
        "decision_latency_ms_p95": s["p95"],
        "decision_latency_ms_max": s["max"],
        "stage_ms_p50": {k: float(np.percentile(v, 50)) for k, v in parts.items()},
        "baseline_decision_latency_ms_p50": b["p50"],
        "baseline_decision_latency_ms_p95": b["p95"],
        "baseline_torch_threads": default_threads,
        "speedup_p95_vs_baseline": b["p95"] / s["p95"],
        "budget_ms_p95": 45.0,
        "within_budget": s["p95"] < 45.0,
        "batched_decisions_per_s": per_s,
        "batch_size": batch,
        "decisions": len(lat),
        "hidden": args.hidden,
        "model_parameters": sum(p.numel() for p in model.parameters()),
    }, model


ECHO = """
import asyncio, sys
from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
async def main(boot, state, commands):
    settings = KafkaSettings(bootstrap=boot)
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    consumer = make_consumer(settings, state, group_id="bench-echo", fetch_max_wait_ms=100)
    await consumer.start()
    while True:
        for records in (await consumer.getmany(timeout_ms=200, max_records=64)).values():
            for rec in records:
                await producer.send(commands, rec.value[:200], key=rec.key)
asyncio.run(main(*sys.argv[1:]))
"""


async def _round_trips(settings, topics, packets: list[bytes], decode: bool, log_path: Path) -> list[float]:
    """Send one packet, wait for the answer on `commands`; the first 20 (start-up, warm-up) are not kept."""
    from aiokafka import TopicPartition

    from tamiyo.bus.clients import make_consumer, make_producer

    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    consumer = make_consumer(settings, group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    tp = TopicPartition(topics.commands, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    rtt: list[float] = []
    try:
        for i, value in enumerate(packets):
            t0 = time.perf_counter()
            await producer.send_and_wait(topics.state, value, key=b"bench")
            got = None
            deadline = time.monotonic() + (180 if i == 0 else 30)  # the first waits for the process to start
            while got is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer to packet {i} (see {log_path})")
                for records in (await consumer.getmany(tp, timeout_ms=100)).values():
                    if records:
                        got = records[-1]
            if i >= 20:
                rtt.append((time.perf_counter() - t0) * 1e3)
            if decode:
                decode_envelope(got.value, expect=pb.AdaptationCommand)
    finally:
        await consumer.stop()
        await producer.stop()
    return rtt


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


SERVE = [sys.executable, "-m", "tamiyo.cli.main", "serve", "--run", "bench"]


async def _e2e(args: argparse.Namespace, model: TamiyoGNN, bootstrap: str, workdir: Path) -> dict[str, object]:
    from tamiyo.bus.admin import ensure_topics
    from tamiyo.bus.clients import KafkaSettings, make_producer
    from tamiyo.contracts.key_files import write_keypair
    from tamiyo.contracts.topics import Topics
    from tamiyo.policy.signing import signed_snapshot

    settings = KafkaSettings(bootstrap=bootstrap)
    _, public_key, signer = write_keypair(workdir / "keys", overwrite=True)  # serving gets the public key only
    packets, _ = make_packets(args.e2e + 20, seed=1)

    # Baseline: the same round trips answered by a bare Kafka echo (no decode, no GNN): the bus's share.
    echo_topics = Topics.for_run("bench-echo")
    await ensure_topics(settings, echo_topics)
    echo_log = workdir / "echo.log"
    with open(echo_log, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", ECHO, bootstrap, echo_topics.state, echo_topics.commands],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            echo = await _round_trips(settings, echo_topics, packets, False, echo_log)
        finally:
            _stop(proc)

    topics = Topics.for_run("bench")
    await ensure_topics(settings, topics)
    producer = make_producer(settings)
    await producer.start()
    try:
        snap = signed_snapshot(model, version=1, policy_id="tamiyo-serving", signer=signer)
        await producer.send_and_wait(
            topics.policy, EnvelopeEncoder("bench/promote").encode(snap), key=b"tamiyo-serving"
        )
    finally:
        await producer.stop()
    serve_log = workdir / "serve.log"
    with open(serve_log, "w") as log:
        proc = subprocess.Popen(
            [*SERVE, "--bootstrap", bootstrap, "--trusted-keys", str(public_key)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            rtt = await _round_trips(settings, topics, packets, True, serve_log)
        finally:
            out = _stop(proc)
    served = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    r, e = _pct(rtt), _pct(echo)
    return {
        "e2e_round_trip_ms_p50": r["p50"],
        "e2e_round_trip_ms_p95": r["p95"],
        "e2e_round_trips": len(rtt),
        "e2e_baseline_kafka_echo_ms_p50": e["p50"],
        "e2e_baseline_kafka_echo_ms_p95": e["p95"],
        "serve_reported_decision_latency_ms_p50": served.get("decision_latency_ms_p50"),
        "serve_reported_decision_latency_ms_p95": served.get("decision_latency_ms_p95"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--e2e", type=int, default=200, help="round trips through the local broker")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--no-broker", action="store_true", help="skip the end-to-end part")
    args = parser.parse_args()
    result, model = in_process(args)
    result["cpu_count"] = os.cpu_count()
    result["load_avg_1m"] = os.getloadavg()[0]
    if not args.no_broker:
        from tamiyo.bus.broker import LocalBroker, free_port

        with tempfile.TemporaryDirectory(prefix="tamiyo-bench-serve-") as tmp:
            workdir = Path(tmp)
            broker = LocalBroker(workdir / "broker")
            info = broker.up(port=free_port(), die_with_parent=True, timeout_s=180)
            try:
                result.update(asyncio.run(_e2e(args, model, info.bootstrap, workdir)))
            finally:
                broker.down()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

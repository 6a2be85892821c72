"""Frames/s through Kafka vs the same learner fed in-process: prints one JSON object.

python bench/pipeline.py [--frames 20000] [--env host-sim] [--actors 2] [--envs-per-actor 8]

Same actors (count, envs, unroll length), same IMPALA learner config, same
frame budget:

- bus: `tamiyo train` (local broker, actor processes, replay, learner) —
  frames/s measured from the first actor telemetry to the last (process and
  broker start-up excluded), plus the policy-lag distribution the learner saw
  and the bytes on the `trajectories` topic per env frame;
- in-process: one process steps the same envs with a lagging copy of the
  network and feeds the learner directly (no serialization, no bus).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tamiyo.bus.broker import LocalBroker, free_port
from tamiyo.bus.clients import KafkaSettings, assign_from_beginning, make_consumer
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector


def in_process(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    collectors = []
    envs0 = [make_env(args.env, seed=i) for i in range(args.envs_per_actor)]
    model = TamiyoGNN(envs0[0].schema, ModelConfig(hidden=args.hidden))
    learner = ImpalaLearner(model, ImpalaConfig(batch_size=args.batch_size, unroll_length=args.unroll_length))
    actor_model = copy.deepcopy(model)
    policy = ModelPolicy(actor_model)
    for a in range(args.actors):
        envs = envs0 if a == 0 else [make_env(args.env, seed=100 * a + i) for i in range(args.envs_per_actor)]
        collectors.append(RolloutCollector(envs, policy, args.unroll_length, seed=a))
    pending: list = []
    frames, t0 = 0, time.perf_counter()
    while frames < args.frames:
        for c in collectors:
            pending.extend(c.collect())
            frames += args.unroll_length * args.envs_per_actor
        while len(pending) >= args.batch_size:
            batch, pending = pending[: args.batch_size], pending[args.batch_size :]
            learner.step(batch)
            actor_model.load_state_dict(model.state_dict())
            policy.version = learner.version
    wall = time.perf_counter() - t0
    return {
        "inprocess_frames_per_s": frames / wall,
        "inprocess_frames": float(frames),
        "inprocess_wall_s": wall,
    }


async def _bytes_on_topic(bootstrap: str, topic: str) -> int:
    consumer = make_consumer(KafkaSettings(bootstrap), group_id=None)
    await consumer.start()
    total = 0
    try:
        tps = await assign_from_beginning(consumer, topic)
        end = await consumer.end_offsets(tps)
        while any(pos < end[tp] for tp, pos in zip(tps, [await consumer.position(tp) for tp in tps], strict=True)):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                total += sum(len(r.value) for r in records)
    finally:
        await consumer.stop()
    return total


def over_bus(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    broker = LocalBroker(workdir / "broker")
    info = broker.up(port=free_port(), die_with_parent=True)
    try:
        cmd = [sys.executable, "-m", "tamiyo.cli.main", "train", "--bootstrap", info.bootstrap, "--env", args.env,
               "--algo", "impala", "--actors", str(args.actors), "--envs-per-actor", str(args.envs_per_actor),
               "--unroll-length", str(args.unroll_length), "--batch-size", str(args.batch_size),
               "--frames", str(args.frames), "--hidden", str(args.hidden), "--out", str(workdir / "runs"),
               "--run-id", "bench", "--eval-tasks", "2"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows = [json.loads(x) for x in (workdir / "runs" / "bench" / "metrics.jsonl").read_text().splitlines()]
        actor_rows = [r for r in rows if r["source"].startswith("actor/") and r["metrics"].get("env_steps", 0) > 0]
        first: dict[str, tuple[float, float]] = {}
        last: dict[str, tuple[float, float]] = {}
        for r in actor_rows:
            first.setdefault(r["source"], (r["t"], r["metrics"]["env_steps"]))
            last[r["source"]] = (r["t"], r["metrics"]["env_steps"])
        frames = sum(last[s][1] - first[s][1] for s in last)
        span = max(t for t, _ in last.values()) - min(t for t, _ in first.values())
        lags = [
            r["metrics"]["policy_lag_mean"]
            for r in rows
            if r["source"] == "learner" and "policy_lag_mean" in r["metrics"]
        ]
        total_frames = sum(v[1] for v in last.values())
        topic_bytes = asyncio.run(_bytes_on_topic(info.bootstrap, "tamiyo.bench.trajectories"))
        return {
            "bus_frames_per_s": frames / span if span > 0 else 0.0,
            "bus_frames": float(total_frames),
            "policy_lag_p50": float(np.percentile(lags, 50)) if lags else float("nan"),
            "policy_lag_p90": float(np.percentile(lags, 90)) if lags else float("nan"),
            "policy_lag_max": float(np.max(lags)) if lags else float("nan"),
            "bus_bytes_per_frame": topic_bytes / total_frames if total_frames else float("nan"),
        }
    finally:
        broker.down()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--env", default="host-sim")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--envs-per-actor", type=int, default=8)
    ap.add_argument("--unroll-length", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bus = over_bus(args, Path(tmp))
    local = in_process(args)
    result = {
        **bus,
        **local,
        "ratio": bus["bus_frames_per_s"] / local["inprocess_frames_per_s"],
        **vars(args),
    }
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()

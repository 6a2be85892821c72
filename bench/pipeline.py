"""Where the frames go: the pipeline through Kafka against its parts alone, one JSON object.

    python bench/pipeline.py [--preset host-sim] [--frames 300000] [--part-seconds 15] [--no-bus]
                             [--baseline-rev REV]

With the preset's shape (actors x envs per actor, unroll length, batch size, replay settings) and network:

- ``actor_only_frames_per_s``: one `ActorCore` (the vector env, one forward pass for all its envs, the
  `Trajectory` encoding) with no Kafka, and its CPU µs per frame split into env / acting / encode;
- ``learner_only_frames_per_s``: `LearnerCore.handle` (decode + validate + IMPALA step) on encoded batches;
- ``inprocess_frames_per_s``: the same envs, network and learner in one process, no bus (the actors' copy
  of the network refreshed after every collect);
- ``bus_frames_per_s``: a real `tamiyo train --preset ...` (local broker; start-up excluded: the actors'
  frames between their first and last telemetry), ``ratio`` = bus / in-process, the frames the learner
  learned from, and the CPU µs per frame of every process (actor, replay, learner, the Kafka broker), from
  the services' ``process_cpu_s`` telemetry and the broker's /proc entry;
- ``before``: the same figures measured on the main branch before the throughput work (issue 11), so
  the speed-up is visible (recorded on another day's machine: compare ratios, not these absolutes);
- ``baseline`` (with ``--baseline-rev REV``): the parts alone and the bus run of commit REV, measured in
  this run on this machine (a git worktree of REV on PYTHONPATH, ahead of the editable install), and
  ``speedup_vs_baseline``.

Every part runs with one torch thread, as `tamiyo train` runs its services.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tamiyo.contracts.codec import EnvelopeEncoder, encode_payload_bytes
from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import PolicySigner
from tamiyo.contracts.topics import Topics
from tamiyo.learner.core import LearnerConfig, LearnerCore
from tamiyo.learner.impala import ImpalaLearner
from tamiyo.learner.presets import Preset, get_preset
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.actor_config import ActorConfig
from tamiyo.producers.actor_core import ActorCore
from tamiyo.producers.envs import make_vec_env
from tamiyo.producers.vec_rollout import VecRolloutCollector
from tamiyo.runtime import tune_allocator

SIGNER = PolicySigner.generate()  # in-process only: the actor trusts the learner's fresh key
# Measured on this 2-core machine with the code of commit 4096b06 (the landed main after the architecture
# issue, before any throughput work; the old modules imported from a worktree), one torch thread:
# `tamiyo train --preset host-sim --frames 200000` (2 actors x 16 envs, batches of 16), and the actor's and
# the learner's work alone.  The issue's own figure for the landed main was 243,840 frames in 205 s.
BEFORE = {
    "bus_frames_per_s": 1503.5,
    "actor_only_frames_per_s": 1214.0,  # 16 scalar envs, RolloutCollector + encode (2,545 with 128 envs)
    "learner_only_frames_per_s": 5400.0,  # decode + validate + IMPALA step, batches of 32 (4,210 with 16)
    "commit": "4096b06",
}


def _timed(fn: Any, seconds: float) -> tuple[float, float, int]:
    """(wall s, CPU s, calls) of calling ``fn`` until ``seconds`` of wall time have passed."""
    calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds or calls == 0:
        fn()
        calls += 1
    return time.perf_counter() - wall0, time.process_time() - cpu0, calls


def actor_only(preset: Preset, seconds: float, device: str) -> dict[str, float]:
    shape = preset.pipeline["impala"]
    config = ActorConfig(
        env="host-sim", num_envs=shape.envs_per_actor, unroll_length=shape.unroll_length, device=device
    )
    core = ActorCore(config, SIGNER.trusted())
    assert hasattr(core.policy, "swap")
    torch.manual_seed(0)
    core.policy.swap(TamiyoGNN(core.schema, preset.model), version=1)
    spent = {"env": 0.0, "acting": 0.0}
    env_step, policy = core.vec_env.step, core.collector.policy

    def timed_env(actions: np.ndarray) -> Any:
        t0 = time.process_time()
        try:
            return env_step(actions)
        finally:
            spent["env"] += time.process_time() - t0

    def timed_policy(graphs: Any, masks: np.ndarray) -> Any:
        t0 = time.process_time()
        try:
            return policy(graphs, masks)
        finally:
            spent["acting"] += time.process_time() - t0

    core.vec_env.step = timed_env  # type: ignore[method-assign]  # measurement only
    core.collector.policy = timed_policy
    core.collect()  # warm-up
    spent.update(env=0.0, acting=0.0)

    def one_collect() -> None:
        for unroll in core.collect():
            core.encode(unroll)

    wall, cpu, calls = _timed(one_collect, seconds)
    frames = calls * shape.envs_per_actor * shape.unroll_length
    return {
        "actor_only_frames_per_s": frames / wall,
        "actor_only_cpu_us_per_frame": cpu / frames * 1e6,
        "actor_env_cpu_us_per_frame": spent["env"] / frames * 1e6,
        "actor_acting_cpu_us_per_frame": spent["acting"] / frames * 1e6,
        "actor_cut_and_encode_cpu_us_per_frame": (cpu - spent["env"] - spent["acting"]) / frames * 1e6,
    }


def _batches(preset: Preset, count: int) -> list[bytes]:
    shape = preset.pipeline["impala"]
    vec_env = make_vec_env("host-sim", list(range(shape.batch_size)))
    torch.manual_seed(0)
    policy = ModelPolicy(TamiyoGNN(env_schema("host-sim"), preset.model), version=0)
    collector = VecRolloutCollector(vec_env, policy, shape.unroll_length, seed=0)
    encoder, values = EnvelopeEncoder("bench"), []
    for b in range(count):
        items = []
        for i, u in enumerate(collector.collect()):
            raw = unroll_to_proto(u, "host-sim").SerializeToString()
            encoding, body = encode_payload_bytes(raw)
            items.append(
                pb.SampledItem(
                    index=i, key=i, weight=1.0, encoding=encoding, uncompressed_size=len(raw), trajectory=body
                )
            )
        values.append(encoder.encode(pb.SampledBatch(batch_id=b + 1, items=items)))
    return values


def learner_only(preset: Preset, seconds: float, device: str) -> dict[str, float]:
    shape = preset.pipeline["impala"]
    values = _batches(preset, 8)
    config = LearnerConfig(algo="impala", env="host-sim", model=preset.model, impala=preset.impala, device=device)
    core = LearnerCore(config, Topics.for_run("bench"), SIGNER)
    core.handle(values[0])
    index = [0]

    def step() -> None:
        index[0] = (index[0] + 1) % len(values)
        core.handle(values[index[0]])

    wall, cpu, calls = _timed(step, seconds)
    frames = calls * shape.batch_size * shape.unroll_length
    decode_wall, _, decodes = _timed(lambda: core.decode(values[1]), seconds / 5)
    return {
        "learner_only_frames_per_s": frames / wall,
        "learner_only_cpu_us_per_frame": cpu / frames * 1e6,
        "learner_decode_share": (decode_wall / decodes) / (wall / calls),
    }


def in_process(preset: Preset, seconds: float, device: str) -> dict[str, float]:
    shape = preset.pipeline["impala"]
    torch.manual_seed(0)
    model = TamiyoGNN(env_schema("host-sim"), preset.model).to(device)
    learner = ImpalaLearner(model, preset.impala, device)
    actor_model = copy.deepcopy(model)
    policy = ModelPolicy(actor_model, device=device)
    envs = shape.actors * shape.envs_per_actor
    collector = VecRolloutCollector(make_vec_env("host-sim", list(range(envs))), policy, shape.unroll_length, seed=0)
    pending: list = []

    def collect_and_learn() -> None:
        pending.extend(collector.collect())
        while len(pending) >= shape.batch_size:
            learner.step(pending[: shape.batch_size])
            del pending[: shape.batch_size]
        actor_model.load_state_dict(model.state_dict())
        policy.version = learner.version

    wall, cpu, calls = _timed(collect_and_learn, seconds)
    frames = calls * envs * shape.unroll_length
    return {"inprocess_frames_per_s": frames / wall, "inprocess_cpu_us_per_frame": cpu / frames * 1e6}


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def over_bus(preset: Preset, frames: int, workdir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    from tamiyo.bus.broker import LocalBroker, free_port

    broker = LocalBroker(workdir / "broker")
    info = broker.up(port=free_port(), die_with_parent=True)
    try:
        broker_cpu0 = _proc_cpu_s(info.pid)
        cmd = [sys.executable, "-m", "tamiyo.cli.main", "train", "--bootstrap", info.bootstrap, "--env", "host-sim",
               "--algo", "impala", "--preset", preset.name, "--frames", str(frames), "--out", str(workdir / "runs"),
               "--run-id", "bench", "--eval-tasks", "2"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        broker_cpu = _proc_cpu_s(info.pid) - broker_cpu0
    finally:
        broker.down()
    rows = [json.loads(x) for x in (workdir / "runs" / "bench" / "metrics.jsonl").read_text().splitlines()]
    first: dict[str, tuple[float, float]] = {}
    last: dict[str, dict[str, float]] = {}
    last_t: dict[str, float] = {}
    for r in rows:
        source, m = r["source"], r["metrics"]
        if source.startswith("actor/") and m.get("env_steps", 0) > 0:
            first.setdefault(source, (r["t"], m["env_steps"]))
        if "process_cpu_s" in m:
            last[source], last_t[source] = m, r["t"]
    actors = [s for s in last if s.startswith("actor/")]
    stepped = sum(last[s]["env_steps"] - first[s][1] for s in actors)
    span = max(last_t[s] for s in actors) - min(first[s][0] for s in actors)
    total = sum(last[s]["env_steps"] for s in actors)
    learned = next((last[s]["env_steps"] for s in last if s == "learner"), 0.0)

    def per_frame(prefix: str) -> float:
        return sum(m["process_cpu_s"] for s, m in last.items() if s.startswith(prefix)) / total * 1e6

    return {
        "bus_frames_per_s": stepped / span if span > 0 else 0.0,
        "bus_frames": float(total),
        "bus_frames_learned": float(learned),
        "bus_cpu_us_per_frame": {
            "actors": per_frame("actor/"),
            "replay": per_frame("replay/"),
            "learner": per_frame("learner"),
            "broker": broker_cpu / total * 1e6,
        },
    }


ROOT = Path(__file__).resolve().parents[1]


def baseline(rev: str, preset: Preset, frames: int, part_seconds: float, workdir: Path) -> dict[str, Any]:
    """The parts alone and the bus run of commit ``rev``: its code from a git worktree, put on PYTHONPATH
    (ahead of the editable install's import hook) for its own copy of this script and for `tamiyo train`."""
    tree = workdir / "baseline"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(tree), rev], check=True, capture_output=True)
    try:
        subprocess.run([sys.executable, "tools/package_tree.py"], cwd=tree, check=True, capture_output=True)
        env = os.environ | {"PYTHONPATH": str(tree / "build" / "package-tree")}
        script = [sys.executable, str(tree / "bench" / "pipeline.py"), "--preset", preset.name, "--no-bus"]
        out = subprocess.run([*script, "--part-seconds", str(part_seconds)], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        parts = json.loads(out.strip().splitlines()[-1])
        result = {"rev": rev} | {k: v for k, v in parts.items() if k.endswith(("_per_s", "_per_frame"))}
        return result | over_bus(preset, frames, workdir / "baseline-bus", env=env)
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="host-sim")
    ap.add_argument("--frames", type=int, default=300_000, help="frames of the bus run")
    ap.add_argument("--part-seconds", type=float, default=15.0, help="wall seconds for each part alone")
    ap.add_argument("--no-bus", action="store_true", help="only the parts alone (no broker)")
    ap.add_argument("--device", default="cpu", help="for the parts alone (the bus run uses the preset's cpu)")
    ap.add_argument("--baseline-rev", help="also measure this commit (e.g. the landed main) in the same run")
    args = ap.parse_args()
    tune_allocator()
    torch.set_num_threads(1)
    preset = get_preset(args.preset)
    result: dict[str, Any] = {"preset": preset.name, "device": args.device, "shape": vars(preset.pipeline["impala"])}
    if args.baseline_rev:
        with tempfile.TemporaryDirectory() as tmp:
            result["baseline"] = baseline(args.baseline_rev, preset, args.frames, args.part_seconds, Path(tmp))
    result |= actor_only(preset, args.part_seconds, args.device)
    result |= learner_only(preset, args.part_seconds, args.device)
    result |= in_process(preset, args.part_seconds, args.device)
    if not args.no_bus:
        with tempfile.TemporaryDirectory() as tmp:
            result |= over_bus(preset, args.frames, Path(tmp))
        result["ratio"] = result["bus_frames_per_s"] / result["inprocess_frames_per_s"]
    result["before"] = BEFORE
    result["speedup_vs_before"] = {
        k: result[k] / float(BEFORE[k])
        for k in ("bus_frames_per_s", "actor_only_frames_per_s", "learner_only_frames_per_s")
        if k in result
    }

    if "baseline" in result:
        keys = ("bus_frames_per_s", "inprocess_frames_per_s", "actor_only_frames_per_s", "learner_only_frames_per_s")
        base = result["baseline"]
        result["speedup_vs_baseline"] = {k: result[k] / base[k] for k in keys if k in result and base.get(k)}

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 3)
        return {k: rounded(v) for k, v in value.items()} if isinstance(value, dict) else value

    print(json.dumps(rounded(result)))


if __name__ == "__main__":
    main()

"""Environment throughput.  Prints ONE JSON object.

    python bench/envs.py [--sim-steps N] [--train-steps N]

Each measurement is a function returning a dict of keys; `main` merges them.
The actor measurement starts a local Kafka broker and runs one actor (8
host-sim envs, unrolls of 20) for ``--actor-seconds``, once acting with a
fresh TamiyoGNN policy (the real path) and once with the `random` baseline.  Rates are given per wall second and per CPU
second of this process (the latter is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np

from tamiyo.producers.controllers import RandomController
from tamiyo.producers.envs import make_env


def _mask_sampler(num_heads_sizes: tuple[int, ...], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """What an actor does with a trivial policy: a uniform draw among the allowed joint actions."""
    rng = np.random.default_rng(seed)

    def act(mask: np.ndarray) -> np.ndarray:
        valid = np.flatnonzero(mask)
        return np.array(np.unravel_index(valid[rng.integers(valid.size)], num_heads_sizes))

    return act


def _steps_per_s(env_name: str, steps: int, warmup: int, with_controller: bool = False) -> tuple[float, float, float]:
    """Step with random valid actions; return (steps/s wall, steps/s CPU, ms per step wall).

    ``with_controller``: act through the baseline `RandomController`, which also reads env.info().
    """
    env = make_env(env_name, seed=0)
    ctrl = RandomController(seed=0)
    sample = _mask_sampler(env.schema.head_sizes, seed=0)
    obs = env.reset()

    def run(n: int) -> None:
        nonlocal obs
        for _ in range(n):
            action = ctrl.act(obs, env.info()) if with_controller else sample(obs.action_mask)
            result = env.step(action)
            obs = env.reset() if result.terminated or result.truncated else result.observation

    run(warmup)  # imports, allocator and first-call costs stay out of the numbers
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps / wall, steps / cpu, 1e3 * wall / steps


def _env_only_steps_per_s(steps: int) -> float:
    """host-sim with the cheapest policy (WAIT): the env's own cost, no controller."""
    env = make_env("host-sim", seed=0)
    env.reset()
    wait = np.zeros(3, dtype=np.int64)
    start = time.perf_counter()
    for _ in range(steps):
        if env.step(wait).terminated:
            env.reset()
    return steps / (time.perf_counter() - start)


def measure_host_sim(args: argparse.Namespace) -> dict[str, float]:
    wall, cpu, _ = _steps_per_s("host-sim", args.sim_steps, warmup=300)
    with_ctrl, _, _ = _steps_per_s("host-sim", args.sim_steps // 4, warmup=300, with_controller=True)
    return {
        "host_sim_steps_per_s": wall,
        "host_sim_steps_per_cpu_s": cpu,
        "host_sim_wait_only_steps_per_s": _env_only_steps_per_s(args.sim_steps),
        "host_sim_random_controller_steps_per_s": with_ctrl,
    }


def measure_host_train(args: argparse.Namespace) -> dict[str, float]:
    wall, cpu, ms = _steps_per_s("host-train", args.train_steps, warmup=5)
    return {"host_train_steps_per_s": wall, "host_train_steps_per_cpu_s": cpu, "host_train_ms_per_step": ms}


async def _actor_run(controller: str, args: argparse.Namespace, bootstrap: str, run: str) -> dict[str, float]:
    """One actor process's worth of work against a real broker: trajectories/s and MB/s on the bus."""
    import torch  # only the actor measurement needs torch

    from tamiyo.bus.admin import ensure_topics
    from tamiyo.bus.clients import KafkaSettings, make_consumer, make_producer
    from tamiyo.contracts.codec import EnvelopeEncoder
    from tamiyo.contracts.signing import PolicySigner
    from tamiyo.contracts.topics import Topics
    from tamiyo.policy.model import TamiyoGNN
    from tamiyo.policy.signing import signed_snapshot
    from tamiyo.producers.actor import Actor, ActorConfig

    settings, topics = KafkaSettings(bootstrap), Topics.for_run(run)
    signer = PolicySigner.generate()  # this measurement's own key: the actor trusts its public half
    await ensure_topics(settings, topics)
    if controller == "policy":  # the learned-policy path: a signed snapshot of a fresh network
        torch.manual_seed(0)
        model = TamiyoGNN(make_env("host-sim").schema)
        producer = make_producer(settings)
        await producer.start()
        snap = signed_snapshot(model, version=1, policy_id="tamiyo", signer=signer)
        await producer.send_and_wait(topics.policy, EnvelopeEncoder("bench").encode(snap), key=b"tamiyo")
        await producer.stop()
    config = ActorConfig(env="host-sim", num_envs=args.actor_envs, unroll_length=20, controller=controller,
                         max_seconds=args.actor_seconds, telemetry_every_s=3600)  # fmt: skip
    actor = Actor(config, settings, topics, signer.trusted())
    start = time.perf_counter()
    stats = await actor.run()
    wall = time.perf_counter() - start
    consumer = make_consumer(settings, topics.trajectories, group_id=None)
    await consumer.start()
    total, seen = 0, 0
    while seen < stats.unrolls_published:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            total += sum(len(r.value) for r in records)
            seen += len(records)
    await consumer.stop()
    return {"trajectories_per_s": stats.unrolls_published / wall, "mb_per_s": total / wall / 1e6,
            "bytes_per_trajectory": total / max(seen, 1), "env_steps_per_s": stats.env_steps / wall}  # fmt: skip


def measure_actor(args: argparse.Namespace) -> dict[str, float]:
    """An actor (8 host-sim envs, T=20) publishing to a local broker, with the GNN policy and with `random`."""
    import asyncio
    import tempfile

    from tamiyo.bus.broker import LocalBroker, free_port

    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(tmp)
        info = broker.up(port=free_port(), die_with_parent=True)
        try:
            policy = asyncio.run(_actor_run("policy", args, info.bootstrap, "bench-policy"))
            random = asyncio.run(_actor_run("random", args, info.bootstrap, "bench-random"))
        finally:
            broker.down()
    return {
        "actor_trajectories_per_s": policy["trajectories_per_s"],
        "actor_mb_per_s": policy["mb_per_s"],
        "actor_env_steps_per_s": policy["env_steps_per_s"],
        "actor_bytes_per_trajectory": policy["bytes_per_trajectory"],
        "actor_random_trajectories_per_s": random["trajectories_per_s"],
        "actor_random_mb_per_s": random["mb_per_s"],
    }


MEASUREMENTS: list[Callable[[argparse.Namespace], dict[str, float]]] = [
    measure_host_sim,
    measure_host_train,
    measure_actor,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-steps", type=int, default=20_000)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--actor-envs", type=int, default=8)
    parser.add_argument("--actor-seconds", type=float, default=15.0)
    args = parser.parse_args()
    report: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version()}
    for measure in MEASUREMENTS:
        report.update({k: round(v, 3) for k, v in measure(args).items()})
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()

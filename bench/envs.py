"""Environment throughput.  Prints ONE JSON object.

    python bench/envs.py [--sim-steps N] [--train-steps N]

Each measurement is a function returning a dict of keys; `main` merges them,
so further measurements (e.g. the actor's trajectories/s and MB/s) are one
more entry in MEASUREMENTS.  Rates are given per wall second and per CPU
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


MEASUREMENTS: list[Callable[[argparse.Namespace], dict[str, float]]] = [measure_host_sim, measure_host_train]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-steps", type=int, default=20_000)
    parser.add_argument("--train-steps", type=int, default=150)
    args = parser.parse_args()
    report: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version()}
    for measure in MEASUREMENTS:
        report.update({k: round(v, 3) for k, v in measure(args).items()})
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()

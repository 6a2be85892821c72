"""Host env throughput for N envs: N scalar envs (SyncVecEnv over HostEnv) vs the vector env.  Prints ONE JSON object.

    python bench/vec_envs.py [--env host-sim|host-train] [--sizes 16 64 256] [--scalar-env-steps N] [--vec-env-steps N]

host-sim: `VecHostSim` (numpy arrays); host-train: `VecHostTrain` (the N host networks trained as one batch,
`BatchedHosts`), against `make_env(...)` envs (host-train: `TorchHost`, one host network per env).

Both run in this process with random valid actions (a uniform draw among each env's allowed joint actions,
made the same vectorized way for both and left out of the timing), over whole episodes so the task resets
at episode ends are counted.  Rates are env steps per wall second of ``step`` calls, best of ``--rounds``
(the machine is shared); ``speedup`` is VecHostSim's rate over the scalar envs' at the same N, and
``speedup_cpu`` the same per CPU second of this process (steadier when other work shares the cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from tamiyo.producers.envs import make_env, make_vec_env
from tamiyo.producers.vec_env import SyncVecEnv, VecEnv

EPISODE = 30  # HostConfig.epoch_budget


def _random_actions(masks: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """[N, heads]: per env a uniformly drawn allowed joint action (the largest random key among the allowed)."""
    joint = np.argmax(rng.random(masks.shape) * masks, axis=1)
    return np.stack(np.unravel_index(joint, sizes), axis=1)


def env_steps_per_s(env: VecEnv, env_steps: int, seed: int = 0) -> tuple[float, float]:
    """(env steps per wall second, per CPU second of this process) of ``env.step``, over whole episodes."""
    n = env.num_envs
    steps = max(EPISODE, -(-env_steps // (n * EPISODE)) * EPISODE)  # whole episodes, at least one
    rng = np.random.default_rng(seed)
    obs = env.reset([seed + i for i in range(n)])
    for _ in range(3):  # first-call costs out of the number
        obs = env.step(_random_actions(obs.action_masks, env.schema.head_sizes, rng)).observation
    wall = cpu = 0.0
    for _ in range(steps):
        actions = _random_actions(obs.action_masks, env.schema.head_sizes, rng)
        w, c = time.perf_counter(), time.process_time()
        obs = env.step(actions).observation
        wall, cpu = wall + time.perf_counter() - w, cpu + time.process_time() - c
    return n * steps / wall, n * steps / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=("host-sim", "host-train"), default="host-sim")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--scalar-env-steps", type=int, default=None, help="default 6,000 (host-sim), 240 (host-train)")
    parser.add_argument("--vec-env-steps", type=int, default=None, help="default 60,000 (host-sim), 7,680 (host-train)")
    parser.add_argument("--rounds", type=int, default=2, help="best of, alternating scalar and vector (shared CPUs)")
    args = parser.parse_args()
    train = args.env == "host-train"
    scalar_steps = args.scalar_env_steps or (240 if train else 6_000)
    vec_steps = args.vec_env_steps or (7_680 if train else 60_000)
    report: dict[str, object] = {"env": args.env, "machine": platform.machine(), "python": platform.python_version()}
    for n in args.sizes:
        seeds = list(range(n))
        scalar, vec = (0.0, 0.0), (0.0, 0.0)
        for _ in range(args.rounds):
            # A scalar host-train env costs the same whatever N (one TorchHost each), so at most 8 are timed.
            scalar_seeds = seeds[:8] if train else seeds
            s = env_steps_per_s(SyncVecEnv([make_env(args.env, seed=i) for i in scalar_seeds]), scalar_steps)
            v = env_steps_per_s(make_vec_env(args.env, seeds), vec_steps)
            scalar, vec = (max(scalar[0], s[0]), max(scalar[1], s[1])), (max(vec[0], v[0]), max(vec[1], v[1]))
        report[f"n{n}_scalar_env_steps_per_s"] = round(scalar[0], 1)
        report[f"n{n}_vec_env_steps_per_s"] = round(vec[0], 1)
        report[f"n{n}_scalar_us_per_env_step"] = round(1e6 / scalar[0], 2)
        report[f"n{n}_vec_us_per_env_step"] = round(1e6 / vec[0], 2)
        report[f"n{n}_speedup"] = round(vec[0] / scalar[0], 2)
        report[f"n{n}_speedup_cpu"] = round(vec[1] / scalar[1], 2)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()

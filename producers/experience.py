"""Experience for the in-process training loops (the learner's `inprocess` module): collectors over envs.

`env_collectors(env_name, seed)` is the `CollectorFactory` those loops take: given the behaviour
policy, the number of envs and the unroll length, a `VecRolloutCollector` over ``make_vec_env`` (host-sim
as arrays, other envs through `SyncVecEnv`; both give exactly what N scalar envs would), env i reset
with ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Callable

from tamiyo.policy.protocol import Policy
from tamiyo.producers.envs import make_vec_env
from tamiyo.producers.vec_rollout import VecRolloutCollector


def env_collectors(env_name: str, seed: int) -> Callable[[Policy, int, int], VecRolloutCollector]:
    def make(policy: Policy, num_envs: int, unroll_length: int) -> VecRolloutCollector:
        # Every env's own task stream starts from seed 0, as `make_env(env_name)` did for each of them.
        vec_env = make_vec_env(env_name, [0] * num_envs)
        return VecRolloutCollector(vec_env, policy, unroll_length, seed=seed, env_id=env_name)

    return make

"""Experience for the in-process training loops (the learner's `inprocess` module): collectors over envs.

`env_collectors(env_name, seed)` is the `CollectorFactory` those loops take: given the behaviour
policy, the number of envs and the unroll length, a `RolloutCollector` over fresh envs of
``env_name`` (``gym:<id>``, ``host-sim``, ``host-train``), env i reset with ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Callable

from tamiyo.policy.protocol import Policy
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector


def env_collectors(env_name: str, seed: int) -> Callable[[Policy, int, int], RolloutCollector]:
    def make(policy: Policy, num_envs: int, unroll_length: int) -> RolloutCollector:
        envs = [make_env(env_name) for _ in range(num_envs)]
        return RolloutCollector(envs, policy, unroll_length, seed=seed, env_id=env_name)

    return make

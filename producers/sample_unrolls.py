"""Real host-sim experience for benchmarks and tests: unrolls from the `random` controller.

What the actors publish, not synthetic arrays: the compression ratio and the
bytes per item reported by the benchmarks are measured on this.
"""

from __future__ import annotations

from tamiyo.contracts import codec
from tamiyo.contracts.packing import unroll_to_proto
from tamiyo.contracts.unroll import Unroll
from tamiyo.producers.controller_policy import ControllerPolicy
from tamiyo.producers.controllers import make_controller
from tamiyo.producers.envs import make_env
from tamiyo.producers.rollout import RolloutCollector


def host_sim_unrolls(count: int, length: int = 20, seed: int = 0, num_envs: int = 8) -> list[Unroll]:
    """``count`` consecutive unrolls of ``length`` steps from ``num_envs`` host-sim envs."""
    envs = [make_env("host-sim", seed=seed * 1000 + i) for i in range(num_envs)]
    controllers = [make_controller("random", seed=seed * 1000 + i) for i in range(num_envs)]
    collector = RolloutCollector(
        envs, ControllerPolicy(envs, controllers), length, seed=seed, actor_id="sample", env_id="host-sim"
    )
    unrolls: list[Unroll] = []
    while len(unrolls) < count:
        unrolls.extend(collector.collect())
    return unrolls[:count]


def compressed_payloads(count: int, seed: int = 0, length: int = 20, level: int = 3) -> tuple[list[bytes], list[bytes]]:
    """``count`` host-sim Trajectory payloads as (serialised, zstd-compressed) lists, as replay stores them."""
    unrolls = host_sim_unrolls(count, length, seed)
    schema_name = make_env("host-sim").schema.name
    raw = [unroll_to_proto(u, schema_name).SerializeToString() for u in unrolls]
    return raw, [codec.compress(r, level) for r in raw]

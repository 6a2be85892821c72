"""Vector environments: N environments stepped as arrays, observations as one packed batch of graphs.

`VecEnv` is what the actors step: ``step(actions [N, H])`` applies one action per env and returns the
next observations of all N (as one `PackedGraphs` of N graphs and a bool [N, M] mask array), the
rewards and the episode ends.  Environments reset themselves in the same step ("same-step
autoreset", as `RolloutCollector` always did): after a terminated or truncated step the returned
observation of that env is the first of its next episode, and the observation the episode ended at
is in ``final_graphs`` (one graph per ended env, in env order), because a truncated episode is
bootstrapped from it.

`SyncVecEnv` adapts N scalar `Env`s (gym, host-train, or host-sim as the reference) to the API with a
Python loop; `producers/vec_host_sim.py` is host-sim with no per-env Python in the hot path.
Env i's first episode starts from ``reset(seeds)[i]``; later episodes draw their task from the env's
own seed stream, exactly as a scalar env's ``reset()`` without a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tamiyo.contracts.graph import GraphSchema, PackedGraphs
from tamiyo.producers.env_api import Env, Observation


@dataclass
class VecObservation:
    graphs: PackedGraphs  # N graphs, env order
    action_masks: np.ndarray  # bool [N, M]


@dataclass
class VecStepResult:
    observation: VecObservation  # after autoreset
    rewards: np.ndarray  # float64 [N]
    terminated: np.ndarray  # bool [N]
    truncated: np.ndarray  # bool [N] (never both: termination wins)
    final_graphs: PackedGraphs | None  # one graph per env with terminated | truncated, env order; None if none ended
    infos: list[dict[str, Any]] = field(default_factory=list)  # per env (may be empty: the hot path skips them)


class VecEnv(Protocol):
    num_envs: int
    schema: GraphSchema

    def reset(self, seeds: Sequence[int | None] | None = None) -> VecObservation:
        """Start every env's first episode (``seeds[i]`` for env i; None: from its own seed stream)."""
        ...

    def step(self, actions: np.ndarray) -> VecStepResult:
        """``actions``: int [N, H], each allowed by the env's current mask."""
        ...


class SyncVecEnv:
    """N scalar envs behind the `VecEnv` API (the straightforward reference, and gym/host-train's path)."""

    def __init__(self, envs: Sequence[Env]) -> None:
        if not envs:
            raise ValueError("need at least one env")
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self.schema = self.envs[0].schema
        self._observations: list[Any] = []

    def reset(self, seeds: Sequence[int | None] | None = None) -> VecObservation:
        seeds = list(seeds) if seeds is not None else [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        self._observations = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        return self._batch()

    def step(self, actions: np.ndarray) -> VecStepResult:
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        finals: list[PackedGraphs] = []
        infos: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            res = env.step(actions[i])
            rewards[i] = res.reward
            terminated[i] = res.terminated
            truncated[i] = res.truncated and not res.terminated
            infos.append(res.info)
            if res.terminated or res.truncated:
                finals.append(res.observation.graph)
                self._observations[i] = env.reset()
            else:
                self._observations[i] = res.observation
        final_graphs = PackedGraphs.concat(finals) if finals else None
        return VecStepResult(self._batch(), rewards, terminated, truncated, final_graphs, infos)

    def _batch(self) -> VecObservation:
        return batch_observations(self._observations)


def batch_observations(observations: Sequence[Observation]) -> VecObservation:
    """N scalar envs' observations as one: their graphs packed in env order, their masks stacked."""
    return VecObservation(
        graphs=PackedGraphs.concat([o.graph for o in observations]),
        action_masks=np.stack([o.action_mask for o in observations]),
    )

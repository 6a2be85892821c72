"""``gym:<id>`` environments (discrete actions) as one-node graphs implementing `Env`.

The observation vector becomes the features of the single "global" node; the
action space becomes one readout head; every action is always allowed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tamiyo.contracts.env_schemas import GYM_PREFIX, discrete_spaces, gym_id, gym_schema
from tamiyo.contracts.graph import single_graph
from tamiyo.producers.env_api import Observation, StepResult


class GymGraphEnv:
    """One gymnasium env behind the `Env` protocol."""

    def __init__(self, env_id: str, **make_kwargs: Any) -> None:
        self.env_id = f"{GYM_PREFIX}{gym_id(env_id)}"
        self._env = gym.make(gym_id(env_id), **make_kwargs)
        self.schema = gym_schema(env_id, *discrete_spaces(self._env, env_id))
        self._n_actions = self.schema.action_heads[0].size
        self._mask = np.ones(self._n_actions, dtype=np.bool_)
        self._needs_reset = True

    def _observation(self, obs: np.ndarray) -> Observation:
        feats = np.asarray(obs, dtype=np.float32).reshape(1, -1)
        return Observation(graph=single_graph({"global": feats}, {}), action_mask=self._mask.copy())

    def reset(self, seed: int | None = None) -> Observation:
        obs, _ = self._env.reset(seed=seed)
        self._needs_reset = False
        return self._observation(obs)

    def step(self, action: np.ndarray) -> StepResult:
        if self._needs_reset:
            raise RuntimeError("step() after the episode ended (or before reset); call reset()")
        a = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= a < self._n_actions:
            raise ValueError(f"action {a} out of range for {self.env_id}")
        obs, reward, terminated, truncated, info = self._env.step(a)
        self._needs_reset = bool(terminated or truncated)
        return StepResult(
            observation=self._observation(obs),
            reward=float(reward),
            terminated=bool(terminated),
            truncated=bool(truncated) and not bool(terminated),
            info=dict(info),
        )

    def close(self) -> None:
        self._env.close()

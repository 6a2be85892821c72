"""``gym:<id>`` environments (discrete actions) as one-node graphs implementing `Env`.

The observation vector becomes the features of the single "global" node; the
action space becomes one readout head; every action is always allowed.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, single_graph
from tamiyo.producers.env_api import Observation, StepResult

PREFIX = "gym:"


def _gym_id(env_id: str) -> str:
    return env_id[len(PREFIX) :] if env_id.startswith(PREFIX) else env_id


def _schema_for(env_id: str, env: gym.Env) -> GraphSchema:
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{env_id}: only Discrete action spaces are supported, got {env.action_space}")
    obs_dim = int(np.prod(env.observation_space.shape))
    return GraphSchema(
        name=f"{PREFIX}{_gym_id(env_id)}",
        node_types=(NodeType("global", obs_dim),),
        relations=(),
        action_heads=(ActionHead("action", int(env.action_space.n)),),
    )


def gym_schema(env_id: str) -> GraphSchema:
    env = gym.make(_gym_id(env_id))
    try:
        return _schema_for(env_id, env)
    finally:
        env.close()


class GymGraphEnv:
    """One gymnasium env behind the `Env` protocol."""

    def __init__(self, env_id: str, **make_kwargs: object) -> None:
        self.env_id = f"{PREFIX}{_gym_id(env_id)}"
        self._env = gym.make(_gym_id(env_id), **make_kwargs)
        self.schema = _schema_for(env_id, self._env)
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

"""The graph schema of every environment by name, without building the environment.

What the learner and serving need to shape the network and check trajectories and state packets:

- ``host-train`` / ``host-sim``: `host_schema` with the default number of seed slots and the size of
  the blueprint catalog (the host envs check that they match; see `producers/host_env.py`);
  ``host-sim:FILE`` is host-sim simulating with the parameters of a calibration file (`tamiyo calibrate`):
  the same schema; ``host-train:paired`` is host-train whose training reward is the gain over a twin host
  run by the `none` controller on the same task (producers/vec_host_train.py): the same schema;
- ``gym:<id>``: one node with the observation vector, one readout head over the discrete actions
  (`gym_schema`).  Gymnasium is asked for the spaces (imported on demand: only gym envs need it).
"""

from __future__ import annotations

import math
from typing import Any

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType
from tamiyo.contracts.host_schema import DEFAULT_NUM_BLUEPRINTS, DEFAULT_NUM_SLOTS, host_schema

HOST_ENVS = ("host-train", "host-sim")
GYM_PREFIX = "gym:"
SIM_PREFIX = "host-sim:"  # host-sim:FILE, with the SimParams of a calibration file
PAIRED_HOST_TRAIN = "host-train:paired"  # host-train, rewarded by the gain over a `none` twin on the same task


def host_env_base(env_name: str) -> str | None:
    """``host-train`` / ``host-sim`` for a host env name (``host-sim:FILE``, ``host-train:paired`` included), else
    None."""
    if env_name in HOST_ENVS:
        return env_name
    if env_name == PAIRED_HOST_TRAIN:
        return "host-train"
    return "host-sim" if calibration_path(env_name) is not None else None


def is_host_env(env_name: str) -> bool:
    return host_env_base(env_name) is not None


def calibration_path(env_name: str) -> str | None:
    """The calibration file of ``host-sim:FILE`` (None for any other name)."""
    path = env_name[len(SIM_PREFIX) :] if env_name.startswith(SIM_PREFIX) else ""
    return path or None


def gym_id(env_name: str) -> str:
    """``gym:CartPole-v1`` -> ``CartPole-v1`` (a bare id is returned as it is)."""
    return env_name[len(GYM_PREFIX) :] if env_name.startswith(GYM_PREFIX) else env_name


def gym_schema(env_name: str, obs_dim: int, num_actions: int) -> GraphSchema:
    """A gymnasium env with a flat observation of ``obs_dim`` floats and ``num_actions`` discrete actions."""
    return GraphSchema(
        name=f"{GYM_PREFIX}{gym_id(env_name)}",
        node_types=(NodeType("global", obs_dim),),
        relations=(),
        action_heads=(ActionHead("action", num_actions),),
    )


def discrete_spaces(env: Any, env_name: str) -> tuple[int, int]:
    """(observation size, number of actions) of a made gymnasium env; only Discrete actions are supported."""
    import gymnasium as gym

    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{env_name}: only Discrete action spaces are supported, got {env.action_space}")
    shape = env.observation_space.shape
    if shape is None:
        raise ValueError(f"{env_name}: the observation space has no shape")
    return math.prod(shape), int(env.action_space.n)


def gym_spaces(env_name: str) -> tuple[int, int]:
    """`discrete_spaces` of ``gym:<id>``, from a throwaway instance of it."""
    import gymnasium as gym

    env = gym.make(gym_id(env_name))
    try:
        return discrete_spaces(env, env_name)
    finally:
        env.close()


def env_schema(env_name: str) -> GraphSchema:
    """The schema of ``host-train``, ``host-sim[:FILE]`` or ``gym:<id>`` (ValueError for anything else)."""
    if is_host_env(env_name):
        return host_schema(DEFAULT_NUM_SLOTS, DEFAULT_NUM_BLUEPRINTS)
    if env_name.startswith(GYM_PREFIX):
        return gym_schema(env_name, *gym_spaces(env_name))
    known = f"{', '.join(HOST_ENVS)}, {PAIRED_HOST_TRAIN}, host-sim:FILE, gym:<id>"
    raise ValueError(f"unknown env {env_name!r}; known: {known}")

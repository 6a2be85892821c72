"""Greedy evaluation of a policy file on a gym:<id> environment (mean episode return)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tamiyo.producers.envs import make_env
from tamiyo.producers.evaluate import confidence_interval
from tamiyo.producers.policy_controller import PolicyController


def evaluate_gym_policy(policy_path: str | Path, env_name: str, episodes: int = 20, seed: int = 0) -> dict[str, Any]:
    controller = PolicyController.from_file(policy_path)
    env = make_env(env_name)
    returns = []
    for k in range(episodes):
        obs, done, ret = env.reset(seed=seed + k), False, 0.0
        while not done:
            result = env.step(controller.act(obs, {}))
            obs, ret = result.observation, ret + result.reward
            done = result.terminated or result.truncated
        returns.append(ret)
    values = np.asarray(returns)
    lo, hi = confidence_interval(values)
    return {
        "env": env_name,
        "episodes": episodes,
        "mean_return": float(values.mean()),
        "return_ci95": [lo, hi],
    }

"""host-sim and host-train as `gymnasium.Env`s (``tamiyo/HostSim-v0``, ``tamiyo/HostTrain-v0``).

A thin shell over the native `HostEnv` that `make_env` builds: the dynamics, rewards and masks are
the native env's, only the shapes change.

- Observation: the ``Dict`` of fixed-shape graph arrays and the action mask (graph_spaces.py).
- Action: ``MultiDiscrete([NUM_OPS, S, B])``, the factored (op, slot, blueprint) action.
- Kwargs: ``task_seed`` (the task stream that ``reset()`` walks, as `make_env`'s ``seed``), ``split``
  (``"train"`` or the held-out ``"eval"`` tasks), ``invalid_action`` and any `HostConfig` field.
- ``reset(seed=s)`` restarts the task stream from ``s``: the episodes that follow are those of
  ``make_env(name, seed=s)``.  The epoch budget ends an episode by termination, never truncation.
- Invalid actions: a head the op does not read is ignored (WAIT/LR ops read neither slot nor
  blueprint, ADVANCE/CULL no blueprint), so every action has one meaning.  What the mask still
  forbids then runs as WAIT, which is always allowed (``invalid_action="raise"``: ValueError instead,
  as the native env).  No penalty: the reward stays the native env's.  ``info["applied_action"]``
  holds what ran, ``info["action_valid"]`` whether it was what was asked.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tamiyo.contracts.host_schema import OP_ADVANCE, OP_CULL, OP_GERMINATE, OP_WAIT
from tamiyo.producers.envs import make_env
from tamiyo.producers.graph_spaces import GraphObs, host_layout
from tamiyo.producers.host_env import HostEnv

# Which heads each op reads (contracts/commands.py turns the same ops into commands).
_READS_SLOT = frozenset({OP_GERMINATE, OP_ADVANCE, OP_CULL})
_READS_BLUEPRINT = frozenset({OP_GERMINATE})

InvalidAction = Literal["wait", "raise"]


def canonical_action(action: np.ndarray) -> np.ndarray:
    """(op, slot, blueprint) with the heads the op does not read set to 0, where the mask expects them."""
    flat = np.asarray(action).reshape(-1)
    if flat.shape != (3,):
        raise ValueError(f"expected (op, slot, blueprint), got shape {np.shape(action)}")
    op, slot, bp = (int(v) for v in flat)
    return np.array(
        [op, slot if op in _READS_SLOT else 0, bp if op in _READS_BLUEPRINT else 0],
        dtype=np.int64,
    )


class HostGymEnv(gym.Env[GraphObs, np.ndarray]):
    """One native host env behind the gymnasium API; see the module docstring."""

    env_name: ClassVar[str]

    def __init__(
        self,
        task_seed: int = 0,
        split: str = "train",
        invalid_action: InvalidAction = "wait",
        **config: Any,
    ) -> None:
        if invalid_action not in ("wait", "raise"):
            raise ValueError(f"invalid_action must be 'wait' or 'raise', got {invalid_action!r}")
        self.invalid_action = invalid_action
        self._config = {**config, "split": split}
        self.native = self._make_native(task_seed)
        self.layout = host_layout(self.native.num_slots, self.native.num_blueprints)
        self.observation_space = self.layout.space()
        self.action_space = spaces.MultiDiscrete(list(self.native.schema.head_sizes))

    def _make_native(self, task_seed: int) -> HostEnv:
        env = make_env(self.env_name, seed=task_seed, **self._config)
        assert isinstance(env, HostEnv)  # make_env's host names build HostEnvs
        return env

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[GraphObs, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            # A fresh native env, not native.reset(seed): that would replay one task, not a stream.
            self.native = self._make_native(seed)
        obs = self.native.reset()
        return self.layout.encode(obs), {"run_id": self.native.run_id}

    def step(self, action: np.ndarray) -> tuple[GraphObs, float, bool, bool, dict[str, Any]]:
        applied = canonical_action(action)
        valid = self.native.is_allowed(*(int(v) for v in applied))
        if not valid:
            if self.invalid_action == "raise":
                raise ValueError(f"action {applied.tolist()} is masked out")
            applied = np.array([OP_WAIT, 0, 0], dtype=np.int64)
        res = self.native.step(applied)
        info = {**res.info, "applied_action": applied, "action_valid": valid}
        return self.layout.encode(res.observation), res.reward, res.terminated, res.truncated, info


class HostSimGymEnv(HostGymEnv):
    """``tamiyo/HostSim-v0``: the analytical surrogate host (numpy only, fast)."""

    env_name = "host-sim"


class HostTrainGymEnv(HostGymEnv):
    """``tamiyo/HostTrain-v0``: real training of a small torch MLP, one epoch per step."""

    env_name = "host-train"

"""A baseline controller (heuristic / random / none / tuned) behind the batched `Policy` interface,
so baselines can feed the bus and the benchmarks exactly like the learned policy.  No torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.policy.protocol import PolicyStep
from tamiyo.producers.controllers import Controller, RandomController
from tamiyo.producers.env_api import Observation


class ControllerPolicy:
    """Adapts per-env baseline controllers to the batched `Policy` interface.

    Behaviour log-probs: deterministic controllers choose with probability 1
    (log-prob 0); `random` is uniform over the valid joint actions.
    """

    version = 0  # baselines never change

    def __init__(self, envs: Sequence, controllers: Sequence[Controller]) -> None:
        if len(envs) != len(controllers):
            raise ValueError("one controller per env")
        self.envs = list(envs)
        self.controllers = list(controllers)
        self._last_epoch = [None] * len(envs)

    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        n = len(self.envs)
        actions = np.zeros((n, 3), dtype=np.int32)
        log_probs = np.zeros(n, dtype=np.float32)
        for i, (env, ctl) in enumerate(zip(self.envs, self.controllers, strict=True)):
            info = env.info()
            # A new episode starts when the epoch counter goes back (the collector reset the env).
            if self._last_epoch[i] is None or info["epoch"] < self._last_epoch[i]:
                ctl.reset()
            self._last_epoch[i] = info["epoch"]
            obs = Observation(graph=graphs.select(np.array([i])), action_mask=masks[i])
            actions[i] = ctl.act(obs, info)
            if isinstance(ctl, RandomController):
                log_probs[i] = -np.log(float(masks[i].sum()))
        return PolicyStep(actions=actions, log_probs=log_probs, version=self.version)
